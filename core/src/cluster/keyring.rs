//! Gossip encryption: the shared keys (a [`Keyring`]) and what they do to datagrams.
//!
//! The layout is memberlist's (encryption version 1, no padding), so a datagram is
//! `[1][12-byte nonce][ciphertext][16-byte tag]`, 29 bytes more than its plaintext, sealed
//! with AES-GCM under the keyring's primary key (AES-128, -192 or -256 by the key's length)
//! and no associated data. Nonces are drawn from the cluster's seeded RNG: 96 random bits
//! per datagram, so the runtime must seed it from OS entropy (it does) for nonces never to
//! repeat across restarts under one key.
//!
//! On receive every key is tried, primary first, which is what lets keys rotate: add the new
//! key everywhere, make it primary everywhere, remove the old one. A datagram no key opens
//! (a stranger, a wrong key, a truncated or tampered datagram, plaintext) is dropped and
//! counted. `verify_incoming = false` accepts such datagrams as plaintext instead, and
//! `verify_outgoing = false` sends plaintext: Consul's `encrypt_verify_incoming` and
//! `encrypt_verify_outgoing`, for turning encryption on in a running cluster without a
//! split.
//!
//! Opening allocates nothing beyond a scratch buffer of the datagram's size, which is
//! bounded by the pool's `max_packet_size` before it gets here.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng as _, SeedableRng as _};

/// memberlist's encryption version byte (AES-GCM, no padding).
pub const ENCRYPTION_VERSION: u8 = 1;
/// Bytes of the nonce.
const NONCE: usize = 12;
/// Bytes of the GCM tag.
const TAG: usize = 16;
/// Bytes encryption adds to a datagram: version, nonce and tag.
pub const ENCRYPTION_OVERHEAD: usize = 1 + NONCE + TAG;

/// Why a key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Not standard base64.
    Base64,
    /// Not 16, 24 or 32 bytes long (the length found).
    Length(usize),
    /// tandem-core was built without its `encryption` feature.
    Unsupported,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Base64 => f.write_str("the key is not valid base64"),
            KeyError::Length(n) => write!(
                f,
                "the key is {n} bytes; it must be 16, 24 or 32 bytes (AES-128, -192 or -256)"
            ),
            KeyError::Unsupported => {
                f.write_str("gossip encryption is not built in (tandem-core feature `encryption`)")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KeyError {}

/// One gossip key: 16, 24 or 32 bytes. Its `Debug` shows the length only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GossipKey {
    bytes: [u8; 32],
    len: u8,
}

impl GossipKey {
    /// A key from its bytes (16, 24 or 32 of them).
    pub fn new(bytes: &[u8]) -> Result<GossipKey, KeyError> {
        if !matches!(bytes.len(), 16 | 24 | 32) {
            return Err(KeyError::Length(bytes.len()));
        }
        if !cfg!(feature = "encryption") {
            return Err(KeyError::Unsupported);
        }
        let mut key = GossipKey {
            bytes: [0; 32],
            len: bytes.len() as u8,
        };
        key.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(key)
    }

    /// A key from standard base64, as `serf agent -encrypt` and Consul's `encrypt` take it.
    pub fn from_base64(text: &str) -> Result<GossipKey, KeyError> {
        // Longer text cannot be a valid key: refuse it before decoding.
        let text = text.trim();
        if text.len() > 64 {
            return Err(KeyError::Length(text.len() / 4 * 3));
        }
        let mut buf = [0u8; 48];
        let n = STANDARD
            .decode_slice(text, &mut buf)
            .map_err(|_| KeyError::Base64)?;
        GossipKey::new(buf.get(..n).unwrap_or_default())
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// The key in standard base64 (what `keygen` prints and `-encrypt` takes).
    pub fn to_base64(&self) -> String {
        let mut out = [0u8; 44];
        let n = STANDARD
            .encode_slice(self.as_bytes(), &mut out)
            .unwrap_or_default();
        String::from_utf8_lossy(out.get(..n).unwrap_or_default()).into_owned()
    }
}

impl fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GossipKey(<{} bytes>)", self.len)
    }
}

/// The gossip keys: the first (primary) seals outgoing datagrams, all of them open incoming
/// ones (memberlist's keyring). Empty: gossip is plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<GossipKey>,
    /// Drop incoming datagrams no key opens (default). False accepts them as plaintext
    /// (Consul's `encrypt_verify_incoming`).
    pub verify_incoming: bool,
    /// Seal outgoing datagrams (default). False sends plaintext (Consul's
    /// `encrypt_verify_outgoing`).
    pub verify_outgoing: bool,
}

impl Default for Keyring {
    fn default() -> Self {
        Keyring {
            keys: Vec::new(),
            verify_incoming: true,
            verify_outgoing: true,
        }
    }
}

impl Keyring {
    /// A keyring whose primary key is `primary`, also accepting `others` (duplicates of a
    /// key already in are dropped).
    pub fn new(primary: GossipKey, others: impl IntoIterator<Item = GossipKey>) -> Keyring {
        let mut ring = Keyring {
            keys: Vec::from([primary]),
            ..Keyring::default()
        };
        for k in others {
            if !ring.keys.contains(&k) {
                ring.keys.push(k);
            }
        }
        ring
    }

    /// Whether gossip is encrypted (there is a key).
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The key outgoing datagrams are sealed with.
    pub fn primary(&self) -> Option<&GossipKey> {
        self.keys.first()
    }

    /// Every key, primary first.
    pub fn keys(&self) -> &[GossipKey] {
        &self.keys
    }

    /// Replaces the keys (primary first), keeping the verify flags.
    pub(crate) fn set_keys(&mut self, keys: Vec<GossipKey>) {
        self.keys = keys;
    }

    /// `plaintext` sealed as the cluster seals a datagram (memberlist's layout) under the
    /// primary key, with the given `nonce`: for tools and tests that craft datagrams, such
    /// as a fuzzer that must get past the tag to reach the codec behind it. `None` without
    /// a key. The cluster itself never reuses a nonce; a caller of this must not either.
    #[cfg(feature = "encryption")]
    pub fn seal(&self, nonce: [u8; NONCE], plaintext: &[u8]) -> Option<Vec<u8>> {
        let cipher = aead::Cipher::new(self.primary()?);
        let mut out = Vec::with_capacity(plaintext.len() + ENCRYPTION_OVERHEAD);
        out.push(ENCRYPTION_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        out.resize(plaintext.len() + ENCRYPTION_OVERHEAD, 0);
        let (body, tag) = out.get_mut(1 + NONCE..)?.split_at_mut(plaintext.len());
        cipher.seal(&nonce, body, tag).then_some(out)
    }
}

fn overhead(enabled: bool, verify_outgoing: bool) -> usize {
    if enabled && verify_outgoing {
        ENCRYPTION_OVERHEAD
    } else {
        0
    }
}

/// Why an incoming datagram was dropped before decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unopened;

/// The keyring in force, as ciphers, and the nonce RNG: seals what the outbox sends and
/// opens what arrives.
#[cfg_attr(not(feature = "encryption"), allow(dead_code))]
pub(crate) struct Crypt {
    #[cfg(feature = "encryption")]
    ciphers: Vec<aead::Cipher>,
    verify_incoming: bool,
    verify_outgoing: bool,
    enabled: bool,
    rng: Xoshiro256PlusPlus,
}

impl fmt::Debug for Crypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key material.
        f.debug_struct("Crypt")
            .field("enabled", &self.enabled)
            .field("verify_incoming", &self.verify_incoming)
            .field("verify_outgoing", &self.verify_outgoing)
            .finish_non_exhaustive()
    }
}

impl Crypt {
    pub(crate) fn new(ring: &Keyring, rng: Xoshiro256PlusPlus) -> Crypt {
        let mut c = Crypt {
            #[cfg(feature = "encryption")]
            ciphers: Vec::new(),
            verify_incoming: true,
            verify_outgoing: true,
            enabled: false,
            rng,
        };
        c.set(ring);
        c
    }

    /// Puts `ring` in force (ciphers are built once here, not per datagram).
    pub(crate) fn set(&mut self, ring: &Keyring) {
        #[cfg(feature = "encryption")]
        {
            self.ciphers = ring.keys().iter().map(aead::Cipher::new).collect();
        }
        self.enabled = ring.is_enabled();
        self.verify_incoming = ring.verify_incoming;
        self.verify_outgoing = ring.verify_outgoing;
    }

    /// Mixes `extra` into the nonce generator (see [`super::Cluster::mix_nonce_entropy`]).
    pub(crate) fn mix_entropy(&mut self, extra: u64) {
        let mixed = self.rng.next_u64() ^ extra.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.rng = Xoshiro256PlusPlus::seed_from_u64(mixed);
    }

    /// Whether there are keys.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Bytes sealing adds to each outgoing datagram (0 when not sealing).
    pub(crate) fn overhead(&self) -> usize {
        overhead(self.enabled, self.verify_outgoing)
    }

    /// Bytes sealing under `ring` adds to each outgoing datagram.
    pub(crate) fn overhead_of(ring: &Keyring) -> usize {
        overhead(ring.is_enabled(), ring.verify_outgoing)
    }

    /// Seals the plaintext in `buf` in place under the primary key; false (and `buf`
    /// cleared) if it could not be sealed. Does nothing when not sealing.
    pub(crate) fn seal(&mut self, buf: &mut Vec<u8>) -> bool {
        if self.overhead() == 0 {
            return true;
        }
        #[cfg(feature = "encryption")]
        if let Some(cipher) = self.ciphers.first() {
            let mut nonce = [0u8; NONCE];
            self.rng.fill_bytes(&mut nonce);
            let n = buf.len();
            buf.resize(n + ENCRYPTION_OVERHEAD, 0);
            buf.copy_within(..n, 1 + NONCE);
            if let Some(head) = buf.get_mut(..1 + NONCE) {
                head[0] = ENCRYPTION_VERSION;
                head[1..].copy_from_slice(&nonce);
            }
            let sealed = buf
                .get_mut(1 + NONCE..)
                .and_then(|rest| {
                    let (body, tag) = rest.split_at_mut(n);
                    cipher.seal(&nonce, body, tag).then_some(())
                })
                .is_some();
            if sealed {
                return true;
            }
        }
        buf.clear();
        false
    }

    /// The plaintext of an incoming datagram: `data` itself when there are no keys (or it
    /// is accepted as plaintext), else its decryption in `scratch`.
    #[cfg_attr(not(feature = "encryption"), allow(unused_variables, clippy::ptr_arg))]
    pub(crate) fn open<'a>(
        &self,
        data: &'a [u8],
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], Unopened> {
        if !self.enabled {
            return Ok(data);
        }
        #[cfg(feature = "encryption")]
        if let Some((&ENCRYPTION_VERSION, rest)) = data.split_first()
            && rest.len() >= NONCE + TAG
        {
            let (nonce, rest) = rest.split_at(NONCE);
            let (body, tag) = rest.split_at(rest.len() - TAG);
            for cipher in &self.ciphers {
                scratch.clear();
                scratch.extend_from_slice(body);
                if cipher.open(nonce, scratch, tag) {
                    return Ok(scratch);
                }
            }
        }
        if self.verify_incoming {
            Err(Unopened)
        } else {
            Ok(data)
        }
    }
}

#[cfg(feature = "encryption")]
mod aead {
    //! The AES-GCM calls, by key length.

    use aes_gcm::aead::{AeadInOut as _, KeyInit as _};
    use aes_gcm::aes::Aes192;
    use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce, Tag};

    use super::GossipKey;

    type Aes192Gcm = AesGcm<Aes192, aes_gcm::aead::consts::U12>;

    pub(super) enum Cipher {
        Aes128(Aes128Gcm),
        Aes192(Aes192Gcm),
        Aes256(Aes256Gcm),
        /// Never built: `GossipKey` guarantees a valid length.
        Invalid,
    }

    impl Cipher {
        pub(super) fn new(key: &GossipKey) -> Cipher {
            let k = key.as_bytes();
            let built = match k.len() {
                16 => Aes128Gcm::new_from_slice(k).map(Cipher::Aes128),
                24 => Aes192Gcm::new_from_slice(k).map(Cipher::Aes192),
                _ => Aes256Gcm::new_from_slice(k).map(Cipher::Aes256),
            };
            built.unwrap_or(Cipher::Invalid)
        }

        /// Encrypts `body` in place and writes the tag into `tag_out` (16 bytes).
        pub(super) fn seal(&self, nonce: &[u8; 12], body: &mut [u8], tag_out: &mut [u8]) -> bool {
            let nonce = Nonce::from(*nonce);
            let tag = match self {
                Cipher::Aes128(c) => c.encrypt_inout_detached(&nonce, b"", body.into()),
                Cipher::Aes192(c) => c.encrypt_inout_detached(&nonce, b"", body.into()),
                Cipher::Aes256(c) => c.encrypt_inout_detached(&nonce, b"", body.into()),
                Cipher::Invalid => return false,
            };
            match tag {
                Ok(tag) if tag_out.len() == tag.len() => {
                    tag_out.copy_from_slice(&tag);
                    true
                }
                _ => false,
            }
        }

        /// Decrypts `body` in place if `tag` authenticates it under `nonce`.
        pub(super) fn open(&self, nonce: &[u8], body: &mut [u8], tag: &[u8]) -> bool {
            let (Ok(nonce), Ok(tag)) = (
                <&Nonce<aes_gcm::aead::consts::U12>>::try_from(nonce),
                <&Tag>::try_from(tag),
            ) else {
                return false;
            };
            let r = match self {
                Cipher::Aes128(c) => c.decrypt_inout_detached(nonce, b"", body.into(), tag),
                Cipher::Aes192(c) => c.decrypt_inout_detached(nonce, b"", body.into(), tag),
                Cipher::Aes256(c) => c.decrypt_inout_detached(nonce, b"", body.into(), tag),
                Cipher::Invalid => return false,
            };
            r.is_ok()
        }
    }
}

#[cfg(all(test, feature = "encryption"))]
mod tests {
    use super::*;
    use alloc::format;

    fn key(fill: u8, len: usize) -> GossipKey {
        GossipKey::new(&[fill; 32][..len]).unwrap()
    }

    fn crypt(ring: &Keyring, seed: u64) -> Crypt {
        Crypt::new(ring, Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    fn sealed(c: &mut Crypt, plain: &[u8]) -> Vec<u8> {
        let mut buf = Vec::from(plain);
        assert!(c.seal(&mut buf));
        buf
    }

    #[test]
    fn the_public_seal_is_what_the_cluster_opens() {
        let ring = Keyring::new(key(3, 24), []);
        let sealed = ring.seal([9; NONCE], b"a datagram").unwrap();
        assert_eq!(sealed.len(), 10 + ENCRYPTION_OVERHEAD);
        assert_eq!(
            &sealed[..1 + NONCE],
            &[1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]
        );
        let mut scratch = Vec::new();
        assert_eq!(
            crypt(&ring, 1).open(&sealed, &mut scratch),
            Ok(&b"a datagram"[..])
        );
        assert_eq!(Keyring::default().seal([0; NONCE], b"x"), None);
    }

    #[test]
    fn keys_parse_from_base64_of_16_24_or_32_bytes() {
        for len in [16, 24, 32] {
            let k = key(7, len);
            let text = k.to_base64();
            assert_eq!(GossipKey::from_base64(&text), Ok(k));
        }
        assert_eq!(
            GossipKey::from_base64("cg8StVXbQJ0gPvMd9o7yrg=="),
            GossipKey::new(&[
                0x72, 0x0f, 0x12, 0xb5, 0x55, 0xdb, 0x40, 0x9d, 0x20, 0x3e, 0xf3, 0x1d, 0xf6, 0x8e,
                0xf2, 0xae
            ])
        );
        assert_eq!(GossipKey::from_base64("not base64!"), Err(KeyError::Base64));
        assert_eq!(
            GossipKey::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(KeyError::Length(20))
        );
        assert_eq!(GossipKey::from_base64(""), Err(KeyError::Length(0)));
        assert!(GossipKey::from_base64(&"A".repeat(10_000)).is_err());
        assert_eq!(format!("{:?}", key(9, 32)), "GossipKey(<32 bytes>)");
    }

    #[test]
    fn a_sealed_datagram_opens_to_its_plaintext_with_memberlists_layout() {
        for len in [16, 24, 32] {
            let ring = Keyring::new(key(1, len), []);
            let mut c = crypt(&ring, 1);
            let wire = sealed(&mut c, b"hello gossip");
            assert_eq!(wire.len(), 12 + ENCRYPTION_OVERHEAD);
            assert_eq!(wire[0], ENCRYPTION_VERSION);
            assert!(!wire.windows(5).any(|w| w == b"hello"));
            let mut scratch = Vec::new();
            assert_eq!(c.open(&wire, &mut scratch), Ok(&b"hello gossip"[..]));
        }
    }

    #[test]
    fn nonces_differ_between_datagrams() {
        let mut c = crypt(&Keyring::new(key(1, 32), []), 5);
        let a = sealed(&mut c, b"same");
        let b = sealed(&mut c, b"same");
        assert_ne!(a[1..13], b[1..13]);
        assert_ne!(a, b);
    }

    #[test]
    fn a_wrong_key_tampering_truncation_and_plaintext_do_not_open() {
        let mut c = crypt(&Keyring::new(key(1, 32), []), 1);
        let other = crypt(&Keyring::new(key(2, 32), []), 1);
        let wire = sealed(&mut c, b"membership");
        let mut s = Vec::new();
        assert_eq!(other.open(&wire, &mut s), Err(Unopened));
        for i in 0..wire.len() {
            let mut bad = wire.clone();
            bad[i] ^= 0x40;
            assert_eq!(c.open(&bad, &mut s), Err(Unopened), "byte {i} flipped");
        }
        for n in 0..wire.len() {
            assert_eq!(c.open(&wire[..n], &mut s), Err(Unopened), "cut at {n}");
        }
        assert_eq!(c.open(b"\x01plaintext frame", &mut s), Err(Unopened));
    }

    #[test]
    fn any_key_of_the_ring_opens_and_the_primary_seals() {
        let (old, new) = (key(1, 16), key(2, 32));
        let mut old_only = crypt(&Keyring::new(old, []), 1);
        let mut both = crypt(&Keyring::new(new, [old]), 2);
        let mut s = Vec::new();
        let from_old = sealed(&mut old_only, b"x");
        assert_eq!(both.open(&from_old, &mut s), Ok(&b"x"[..]));
        let from_both = sealed(&mut both, b"y");
        assert_eq!(old_only.open(&from_both, &mut s), Err(Unopened));
        let new_only = crypt(&Keyring::new(new, []), 3);
        assert_eq!(new_only.open(&from_both, &mut s), Ok(&b"y"[..]));
    }

    #[test]
    fn verify_flags_let_plaintext_through_for_a_rolling_change() {
        let mut ring = Keyring::new(key(1, 32), []);
        ring.verify_incoming = false;
        ring.verify_outgoing = false;
        let mut c = crypt(&ring, 1);
        assert_eq!(c.overhead(), 0);
        assert_eq!(sealed(&mut c, b"plain"), b"plain");
        let mut s = Vec::new();
        assert_eq!(c.open(b"plain", &mut s), Ok(&b"plain"[..]));
        let mut strict = crypt(&Keyring::new(key(1, 32), []), 2);
        let wire = sealed(&mut strict, b"sealed");
        assert_eq!(c.open(&wire, &mut s), Ok(&b"sealed"[..]));
    }
}

//! `keygen`: a new gossip encryption key, as `serf keygen` and `consul keygen` print one —
//! 32 bytes of OS randomness in standard base64, for `agent -encrypt` or the config file's
//! `encrypt`.

use tandem_core::cluster::GossipKey;

/// `PROGRAM keygen`'s usage text.
pub fn keygen_usage(program: &str) -> String {
    format!(
        "Usage: {program} keygen\n\n  Generates a new encryption key that can be used to configure the\n  \
         agent to encrypt gossip traffic (-encrypt, or encrypt in the config file). The\n  \
         output of this command is already in the proper format that the agent expects.\n"
    )
}

/// Runs `keygen` with `args` (after the subcommand): the exit code, and what to print to
/// stdout and to stderr.
pub fn keygen_main(program: &str, args: &[String]) -> (i32, String, String) {
    match args.first().map(String::as_str) {
        None => match new_key() {
            Ok(key) => (0, format!("{key}\n"), String::new()),
            Err(e) => (
                1,
                String::new(),
                format!("Error reading random data: {e}\n"),
            ),
        },
        Some("-h" | "-help" | "--help") => (0, keygen_usage(program), String::new()),
        Some(_) => (
            1,
            String::new(),
            format!(
                "This command takes no arguments\n\n{}",
                keygen_usage(program)
            ),
        ),
    }
}

/// A new 32-byte (AES-256) key in base64.
pub fn new_key() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
    let key = GossipKey::new(&bytes).map_err(|e| e.to_string())?;
    Ok(key.to_base64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_prints_a_new_32_byte_key_the_agent_accepts() {
        let (code, out, err) = keygen_main("tandem", &[]);
        assert_eq!((code, err.as_str()), (0, ""));
        let key = out.strip_suffix('\n').unwrap();
        assert_eq!(key.len(), 44);
        assert_eq!(GossipKey::from_base64(key).unwrap().as_bytes().len(), 32);
        assert_ne!(keygen_main("tandem", &[]).1, out, "keys are random");
    }

    #[test]
    fn keygen_takes_no_arguments() {
        let (code, out, err) = keygen_main("tandem-mio", &["-help".into()]);
        assert_eq!(code, 0);
        assert!(out.starts_with("Usage: tandem-mio keygen\n"), "{out}");
        assert!(err.is_empty());
        let (code, out, err) = keygen_main("tandem", &["x".into()]);
        assert_eq!((code, out.as_str()), (1, ""));
        assert!(err.starts_with("This command takes no arguments"), "{err}");
    }
}

//! With the `console` feature: gzips every file of `console/` into `OUT_DIR` and writes the
//! asset table `src/http/console.rs` includes (path, type, both encodings, ETags).
//!
//! Compressing here rather than committing `.gz` files means the served bytes can never
//! drift from the sources, and the only cost is a build-dependency (flate2 on miniz_oxide,
//! pure Rust): nothing of it is linked into the core. The gzip header carries no time or
//! name, so the output, and with it the ETags, depend only on the sources.

// The core does no I/O (core/clippy.toml); its build script, run by cargo on the build
// host, reads the sources and writes the compressed copies.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

fn main() {
    #[cfg(feature = "console")]
    console::generate();
}

#[cfg(feature = "console")]
mod console {
    use std::fmt::Write as _;
    use std::io::Write as _;
    use std::path::{Path, PathBuf};

    /// The URL path of a file of `console/`: the page at `/`, the rest under `/console/`.
    fn url(name: &str) -> String {
        if name == "index.html" {
            String::from("/")
        } else {
            format!("/console/{name}")
        }
    }

    fn content_type(name: &str) -> &'static str {
        match name.rsplit('.').next() {
            Some("html") => "text/html; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("svg") => "image/svg+xml",
            Some("png") => "image/png",
            other => panic!("console/{name}: no content type for {other:?}"),
        }
    }

    pub(super) fn generate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("core/console")
            .map(|e| {
                e.expect("console entry")
                    .file_name()
                    .into_string()
                    .expect("utf-8 name")
            })
            .collect();
        names.sort();
        let mut table = String::from("&[\n");
        for name in &names {
            let src = dir.join(name);
            println!("cargo:rerun-if-changed={}", src.display());
            let raw = std::fs::read(&src).expect("console file");
            let mut gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::best());
            gz.write_all(&raw).expect("gzip");
            let gz = gz.finish().expect("gzip");
            let gz_path = out.join(format!("{name}.gz"));
            std::fs::write(&gz_path, &gz).expect("write gz");
            let mut crc = flate2::Crc::new();
            crc.update(&raw);
            // A strong validator per representation: the gzip one differs from the identity one.
            let tag = format!("{:x}-{:08x}", raw.len(), crc.sum());
            writeln!(
                table,
                "    Asset {{ path: {:?}, content_type: {:?}, identity: include_bytes!({:?}), \
                 gzip: include_bytes!({:?}), etag: {:?}, etag_gzip: {:?} }},",
                url(name),
                content_type(name),
                src.display().to_string(),
                gz_path.display().to_string(),
                format!("\"{tag}\""),
                format!("\"{tag}-gz\""),
            )
            .expect("fmt");
        }
        table.push(']');
        std::fs::write(out.join("console_assets.rs"), table).expect("write table");
    }
}

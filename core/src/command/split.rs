//! Shell-style splitting of a command line, as Arthas's CLI does it: whitespace separates
//! words, single quotes are literal, double quotes allow `\"` and `\\`, a backslash outside
//! quotes escapes the next character, and an unquoted trailing `&` asks for a background job.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

/// A split command line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) words: Vec<String>,
    pub(crate) background: bool,
}

/// Why a line could not be split.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SplitError {
    UnterminatedQuote,
}

pub(crate) fn split(line: &str) -> Result<Line, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut last_plain_amp = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(core::mem::take(&mut word));
                    in_word = false;
                }
                continue;
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedQuote),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(SplitError::UnterminatedQuote),
                        },
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedQuote),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => {
                // Only a word that is exactly one unquoted `&` asks for the background.
                last_plain_amp = !in_word && c == '&';
                in_word = true;
                word.push(c);
                continue;
            }
        }
        last_plain_amp = false;
    }
    if in_word {
        words.push(word);
    }
    let background = last_plain_amp && words.last().is_some_and(|w| w == "&");
    if background {
        words.pop();
    }
    Ok(Line { words, background })
}

/// A command line as its name and its arguments.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Command<'a> {
    /// `None` for a line with no words.
    pub(crate) name: Option<Cow<'a, str>>,
    pub(crate) args: Vec<String>,
    pub(crate) background: bool,
}

/// [`split`] as name and arguments. A line without quotes or backslashes (the usual one)
/// lends its name: `version` allocates nothing.
pub(crate) fn split_command(line: &str) -> Result<Command<'_>, SplitError> {
    if line.contains(['\'', '"', '\\']) {
        let Line {
            mut words,
            background,
        } = split(line)?;
        let name = (!words.is_empty()).then(|| Cow::Owned(words.remove(0)));
        return Ok(Command {
            name,
            args: words,
            background,
        });
    }
    // `split_whitespace` and `char::is_whitespace` agree (Unicode White_Space).
    let mut words = line.split_whitespace();
    let mut name = words.next();
    let mut args: Vec<String> = words.map(String::from).collect();
    // Only a last word that is exactly `&` asks for the background.
    let background = match args.last() {
        Some(last) => last == "&",
        None => name == Some("&"),
    };
    if background && args.pop().is_none() {
        name = None;
    }
    Ok(Command {
        name: name.map(Cow::Borrowed),
        args,
        background,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn words(line: &str) -> Vec<String> {
        split(line).unwrap().words
    }

    #[test]
    fn split_command_agrees_with_split() {
        for line in [
            "version",
            "  version  ",
            "echo a b",
            "echo a &",
            "echo a&",
            "echo && ",
            "&",
            " & ",
            "",
            "   ",
            "echo 'a b' &",
            "echo \\& x",
            "sleep 1\t&",
            "a\u{2003}b",
            "echo \"&\"",
        ] {
            let Line { words, background } = split(line).unwrap();
            let c = split_command(line).unwrap();
            let mut got: Vec<String> = c.name.iter().map(|n| String::from(&**n)).collect();
            got.extend(c.args);
            assert_eq!((got, c.background), (words, background), "{line:?}");
        }
        assert_eq!(
            split_command("echo 'open").unwrap_err(),
            SplitError::UnterminatedQuote
        );
        assert!(matches!(
            split_command("version").unwrap().name,
            Some(Cow::Borrowed("version"))
        ));
    }

    #[test]
    fn the_seeds_watch_line_keeps_its_quoted_expression_whole() {
        assert_eq!(
            words(r#"watch demo.MathGame primeFactors "{params, returnObj, throwExp}" "#),
            vec![
                "watch",
                "demo.MathGame",
                "primeFactors",
                "{params, returnObj, throwExp}"
            ]
        );
    }

    #[test]
    fn quoting_rules() {
        assert_eq!(
            words(r#"echo 'a "b"' "c \"d\" \x" e\ f"#),
            vec!["echo", r#"a "b""#, r#"c "d" \x"#, "e f"]
        );
        assert_eq!(words("  "), Vec::<String>::new());
        assert_eq!(words("echo ''"), vec!["echo", ""]);
        assert_eq!(split("echo 'open"), Err(SplitError::UnterminatedQuote));
        assert_eq!(split("echo \"open"), Err(SplitError::UnterminatedQuote));
    }

    #[test]
    fn trailing_ampersand_means_background() {
        let l = split("monitor -l INFO &").unwrap();
        assert!(l.background);
        assert_eq!(l.words, vec!["monitor", "-l", "INFO"]);
        assert!(!split("echo '&'").unwrap().background);
        assert!(!split("echo a&").unwrap().background);
        assert!(!split("echo & b").unwrap().background);
    }
}

//! Taking the libpq settings that the driver does not know (`sslrootcert`,
//! `sslcert`, `sslkey`, `passfile`) or knows only in part (`sslmode`: not
//! the verify modes) out of a connection string, before the driver reads
//! the rest. Both forms: `postgres://...?key=value&...` and
//! `key=value key='quoted \' value'`. The string is scanned as the driver
//! scans it, so both agree on where each setting is; a string the scan
//! cannot follow is left whole, for the driver to report.

use percent_encoding::percent_decode_str;

/// A connection string with some settings taken out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Split {
    /// The rest, for the driver.
    pub rest: String,
    /// The settings taken out, decoded, in order.
    pub taken: Vec<(String, String)>,
    /// Whether the string gives a port.
    pub port_given: bool,
}

/// Takes the settings named `keys` out of `conninfo`. The error names the
/// setting that could not be decoded, never its value.
pub(crate) fn split(conninfo: &str, keys: &[&str]) -> Result<Split, String> {
    check_form(conninfo)?;
    match url_body(conninfo) {
        Some(body) => split_url(conninfo, body, keys),
        None => Ok(split_keywords(conninfo, keys)),
    }
}

/// What a connection string looks like, for messages about one that is not.
pub(crate) const FORM: &str = "postgres://USER@HOST[:PORT]/DB or key=value settings such as \
host=HOST dbname=DB";

/// Refuses what is neither a PostgreSQL URL nor `key=value` settings,
/// which the driver would only call an "unexpected EOF": a URL of another
/// scheme (`mysql://`), or a word without `=`. Names the scheme, never
/// the rest (it may hold a password).
fn check_form(conninfo: &str) -> Result<(), String> {
    if url_body(conninfo).is_some() {
        return Ok(());
    }
    if let Some((scheme, _)) = conninfo.split_once("://") {
        let plain = scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        let scheme = if plain && scheme.len() <= 20 {
            scheme
        } else {
            "another scheme"
        };
        return Err(format!(
            "{scheme}:// is not supported: only postgres:// and postgresql:// are supported \
             ({FORM})"
        ));
    }
    if !conninfo.contains('=') {
        return Err(format!("expected {FORM}"));
    }
    Ok(())
}

/// What follows `postgres://` or `postgresql://`.
fn url_body(conninfo: &str) -> Option<&str> {
    ["postgres://", "postgresql://"]
        .iter()
        .find_map(|prefix| conninfo.strip_prefix(prefix))
}

/// Host, path and query: what follows the credentials. Like the driver,
/// the credentials end at the first `@` anywhere.
fn after_credentials(body: &str) -> &str {
    body.find('@').map_or(body, |at| &body[at + 1..])
}

fn split_url(conninfo: &str, body: &str, keys: &[&str]) -> Result<Split, String> {
    let located = after_credentials(body);
    let authority = &located[..located.find(['/', '?']).unwrap_or(located.len())];
    let mut port_given = authority_has_port(authority);
    let Some(query_at) = located.find('?') else {
        return Ok(Split {
            rest: conninfo.to_owned(),
            taken: Vec::new(),
            port_given,
        });
    };
    let head_len = conninfo.len() - located.len() + query_at;
    let (head, query) = (&conninfo[..head_len], &located[query_at + 1..]);
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key, "a setting name")?;
        port_given |= key == "port";
        if keys.contains(&key.as_str()) {
            taken.push((key.clone(), decode(value, &key)?));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        head.to_owned()
    } else {
        format!("{head}?{}", kept.join("&"))
    };
    Ok(Split {
        rest,
        taken,
        port_given,
    })
}

fn decode(text: &str, what: &str) -> Result<String, String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("{what} is not valid percent-encoded UTF-8"))
}

/// Whether the URL's `host[:port],...` part names a port.
fn authority_has_port(authority: &str) -> bool {
    authority
        .split(',')
        .any(|chunk| match chunk.strip_prefix('[') {
            Some(v6) => v6
                .split_once(']')
                .is_some_and(|(_, rest)| rest.starts_with(':')),
            None => chunk.contains(':'),
        })
}

/// A URL with `port` added to its single host, which has none (the driver
/// would otherwise take 5432 for it). Other strings are returned as they are.
pub(crate) fn with_authority_port(conninfo: &str, port: u16) -> String {
    let Some(body) = url_body(conninfo) else {
        return conninfo.to_owned();
    };
    let located = after_credentials(body);
    let end = located.find(['/', '?']).unwrap_or(located.len());
    let authority = &located[..end];
    if authority.is_empty() || authority.contains(',') || authority_has_port(authority) {
        return conninfo.to_owned();
    }
    let at = conninfo.len() - located.len() + end;
    format!("{}:{port}{}", &conninfo[..at], &conninfo[at..])
}

/// The key=value form, scanned as the driver does: whitespace around `=`
/// allowed, values plain or single-quoted, backslash escapes in both.
fn split_keywords(conninfo: &str, keys: &[&str]) -> Split {
    let Some(settings) = scan_keywords(conninfo) else {
        return Split {
            rest: conninfo.to_owned(),
            taken: Vec::new(),
            port_given: false,
        };
    };
    let mut rest = String::new();
    let mut taken = Vec::new();
    let mut port_given = false;
    let mut copied_to = 0;
    for setting in settings {
        port_given |= setting.key == "port";
        if keys.contains(&setting.key.as_str()) {
            rest.push_str(&conninfo[copied_to..setting.start]);
            copied_to = setting.end;
            taken.push((setting.key, setting.value));
        }
    }
    rest.push_str(&conninfo[copied_to..]);
    Split {
        rest,
        taken,
        port_given,
    }
}

struct Setting {
    key: String,
    value: String,
    start: usize,
    end: usize,
}

/// Every `key = value` with its byte span; `None` where the driver would
/// fail (it then says why).
fn scan_keywords(text: &str) -> Option<Vec<Setting>> {
    let mut settings = Vec::new();
    let mut chars = text.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            return Some(settings);
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        chars.next_if(|(_, c)| *c == '=')?;
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        let mut value = String::new();
        let mut closed = !quoted;
        while let Some(&(_, c)) = chars.peek() {
            if (quoted && c == '\'') || (!quoted && c.is_whitespace()) {
                break;
            }
            chars.next();
            if c == '\\' {
                value.extend(chars.next().map(|(_, escaped)| escaped));
            } else {
                value.push(c);
            }
        }
        if quoted {
            closed = chars.next_if(|(_, c)| *c == '\'').is_some();
        }
        if !closed || (!quoted && value.is_empty()) {
            return None;
        }
        let end = chars.peek().map_or(text.len(), |&(i, _)| i);
        settings.push(Setting {
            key,
            value,
            start,
            end,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &["sslmode", "sslrootcert"];

    fn taken(split: &Split) -> Vec<(&str, &str)> {
        split
            .taken
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn url_settings_are_taken_out_and_decoded() {
        let split = split(
            "postgres://u:p@h:5433/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
            KEYS,
        )
        .unwrap();
        assert_eq!(split.rest, "postgres://u:p@h:5433/db?application_name=x");
        assert_eq!(
            taken(&split),
            [("sslmode", "verify-full"), ("sslrootcert", "/etc/ca.pem")]
        );
        assert!(split.port_given);
    }

    #[test]
    fn a_query_left_empty_is_dropped() {
        let split = split("postgresql://h/db?sslmode=require", KEYS).unwrap();
        assert_eq!(split.rest, "postgresql://h/db");
        assert!(!split.port_given);
    }

    #[test]
    fn a_question_mark_in_the_password_is_not_the_query() {
        let split = split("postgres://u:a?sslmode=x@h/db?sslmode=disable", KEYS).unwrap();
        assert_eq!(split.rest, "postgres://u:a?sslmode=x@h/db");
        assert_eq!(taken(&split), [("sslmode", "disable")]);
    }

    #[test]
    fn ports_are_noticed_in_the_authority_and_the_query() {
        let given = |url| split(url, KEYS).unwrap().port_given;
        assert!(given("postgres://h:1/db"));
        assert!(given("postgres://[::1]:1/db"));
        assert!(!given("postgres://[::1]/db"));
        assert!(given("postgres:///db?port=1"));
        assert!(!given("postgres:///db?host=/run/pg"));
        assert!(!given("postgres://u:p@h/db"));
        assert!(given("host=h port=1"));
        assert!(!given("host=h"));
    }

    #[test]
    fn a_port_is_added_to_a_host_without_one() {
        assert_eq!(
            with_authority_port("postgres://u:p@h/db?x=1", 6543),
            "postgres://u:p@h:6543/db?x=1"
        );
        assert_eq!(
            with_authority_port("postgres://h", 6543),
            "postgres://h:6543"
        );
        assert_eq!(
            with_authority_port("postgres://h:1/db", 6543),
            "postgres://h:1/db"
        );
        assert_eq!(
            with_authority_port("postgres:///db", 6543),
            "postgres:///db"
        );
        assert_eq!(with_authority_port("host=h", 6543), "host=h");
    }

    #[test]
    fn keyword_settings_are_taken_out_with_quotes_and_escapes() {
        let split = split(
            r"host=h sslmode = verify-ca  sslrootcert='/a b/c\'d.pem' dbname=x",
            KEYS,
        )
        .unwrap();
        assert_eq!(split.rest, "host=h    dbname=x");
        assert_eq!(
            taken(&split),
            [("sslmode", "verify-ca"), ("sslrootcert", "/a b/c'd.pem")]
        );
    }

    #[test]
    fn a_keyword_string_the_driver_would_refuse_is_left_to_it() {
        let split = split("host=h sslmode='unterminated", KEYS).unwrap();
        assert_eq!(split.rest, "host=h sslmode='unterminated");
        assert!(split.taken.is_empty());
    }

    #[test]
    fn other_schemes_and_bare_words_are_refused_with_the_form_of_a_url() {
        let err = split("mysql://u:s3cret@h/db", KEYS).unwrap_err();
        assert!(err.starts_with("mysql:// is not supported"), "{err}");
        assert!(err.contains("postgres://USER@HOST"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = split("notaurl", KEYS).unwrap_err();
        assert!(err.contains("postgres://USER@HOST[:PORT]/DB"), "{err}");
        assert!(split("host=h", KEYS).is_ok());
        assert!(split("postgresql://h", KEYS).is_ok());
    }

    #[test]
    fn an_undecodable_value_is_named_but_not_shown() {
        let err = split("postgres://h/db?sslrootcert=%ff", KEYS).unwrap_err();
        assert!(err.contains("sslrootcert"), "{err}");
        assert!(!err.contains("%ff"), "{err}");
    }
}

//! The password policy (PCI DSS 8.3.6): at least [`PASSWORD_CHARS_MIN`] characters,
//! and not a common password: not on the list below, not one of its words with digits
//! and symbols around it (`Password2026!`), not one character repeated.

use crate::error::ApiError;

/// Shortest password accepted.
pub const PASSWORD_CHARS_MIN: usize = 12;
/// Longest password accepted (argon2 reads all of it: no unbounded work per request).
pub const PASSWORD_CHARS_MAX: usize = 256;

/// Common passwords of at least 12 characters, lower case (breach lists' top entries).
const COMMON: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678901234",
    "123123123123",
    "123456123456",
    "098765432109",
    "password1234",
    "password12345",
    "password123456",
    "passwordpassword",
    "passw0rd1234",
    "p@ssw0rd1234",
    "p@ssword1234",
    "qwertyuiop12",
    "qwertyuiop123",
    "qwertyuiopasdf",
    "qwerty123456",
    "qwertyqwerty",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "qazwsxedcrfv",
    "zaq12wsxcde3",
    "asdfghjkl123",
    "zxcvbnm12345",
    "1234qwerasdf",
    "abcdefghijkl",
    "abc123456789",
    "abcd12345678",
    "iloveyou1234",
    "letmein12345",
    "welcome12345",
    "changeme1234",
    "administrator",
    "football1234",
    "baseball1234",
    "superman1234",
    "trustno1trustno1",
    "correcthorsebatterystaple",
    "correct horse battery staple",
];

/// Words that, with digits and symbols around them, make a common password.
const COMMON_WORDS: &[&str] = &[
    "password",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "qwerty",
    "qwertyuiop",
    "letmein",
    "welcome",
    "admin",
    "administrator",
    "iloveyou",
    "changeme",
    "summer",
    "winter",
    "spring",
    "autumn",
    "football",
    "baseball",
    "monkey",
    "dragon",
    "sunshine",
    "princess",
    "master",
    "secret",
    "abc",
    "abcdef",
    "login",
    "portal",
];

/// Why `password` is refused (400 `weak_password`), if it is.
pub fn check(password: &str) -> Result<(), ApiError> {
    let weak = |why: String| Err(ApiError::invalid("weak_password", why).with_param("password"));
    let chars = password.chars().count();
    if chars < PASSWORD_CHARS_MIN {
        return weak(format!("a password needs at least {PASSWORD_CHARS_MIN} characters"));
    }
    if chars > PASSWORD_CHARS_MAX {
        return weak(format!("a password has at most {PASSWORD_CHARS_MAX} characters"));
    }
    let lower = password.to_lowercase();
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    let mut distinct: Vec<char> = lower.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if COMMON.contains(&lower.as_str()) || COMMON_WORDS.contains(&core) || core.is_empty() || distinct.len() < 4 {
        return weak("this password is among the most common ones; choose another".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_common_and_padded_common_passwords_are_refused() {
        for weak in [
            "short",
            "elevenchars",
            "password1234",
            "Password1234",
            "Password2026!",
            "!!summer2026!!",
            "123456789012345",
            "aaaaaaaaaaaaaaa",
            "abababababab",
            "Qwerty123456",
        ] {
            assert_eq!(check(weak).map_err(|e| e.code), Err("weak_password"), "{weak}");
        }
        assert!(check(&"x".repeat(PASSWORD_CHARS_MAX + 1)).is_err());
        for fine in ["a long and correct password", "tram-lamp-violet-93", "correct horse battery stapler"] {
            assert!(check(fine).is_ok(), "{fine}");
        }
    }
}

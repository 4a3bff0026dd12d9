//! Project names: the unit of ordering and sharding. Every key of a project carries its name as a hash tag, so
//! a name is validated once, here, before it can reach a key.

use std::fmt;

/// The project used when a request names none.
pub const DEFAULT_PROJECT: &str = "default";
/// Longest project name, in bytes.
pub const MAX_PROJECT_LEN: usize = 64;

/// A validated project name: `^[A-Za-z0-9._-]{1,64}$`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ProjectName(String);

/// Why a string is not a project name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid project name {0:?}: use 1 to 64 characters from A-Z a-z 0-9 . _ -")]
pub struct InvalidProjectName(pub String);

impl ProjectName {
    pub fn parse(name: &str) -> Result<Self, InvalidProjectName> {
        let ok = !name.is_empty()
            && name.len() <= MAX_PROJECT_LEN
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            let mut shown: String = name.chars().take(80).collect();
            if shown.len() < name.len() {
                shown.push('…');
            }
            Err(InvalidProjectName(shown))
        }
    }

    pub fn default_project() -> Self {
        Self(DEFAULT_PROJECT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ProjectName {
    fn default() -> Self {
        Self::default_project()
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ProjectName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        for ok in ["default", "a", "My.Repo_2-x", &"x".repeat(64)] {
            assert_eq!(ProjectName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in ["", "a b", "a{b}", "a:b", "ä", "a/b", &"x".repeat(65)] {
            assert!(ProjectName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}

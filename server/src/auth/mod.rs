//! Authentication: password hashing, tokens, and the [`AuthUser`] extractor.

pub mod extractor;
pub mod password;
pub mod revocation;
pub mod tokens;

pub use extractor::AuthUser;
pub use password::PasswordHasher;
pub use tokens::TokenIssuer;

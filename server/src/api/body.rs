//! The JSON body of a request. actix's `web::Json` reads it (size limit, content type, malformed
//! JSON: `routes::json_error`); this then refuses text holding NUL and turns a body of the wrong
//! shape into `invalid_body` with a message that names no Rust type.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::{AppError, ErrorCode, FieldError};
use crate::input;

/// A request body of type `T`, read as JSON.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let raw = web::Json::<Box<RawValue>>::from_request(req, payload);
        Box::pin(async move {
            let raw = raw.await?.into_inner();
            Ok(Self(parse(raw.get().as_bytes())?))
        })
    }
}

/// A JSON body as a `T`: `invalid_json`, `validation_failed` (a NUL) or `invalid_body` if it is
/// none.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| AppError::new(ErrorCode::InvalidJson, "the body is not UTF-8"))?;
    let value = serde_json::from_str::<T>(text);
    let malformed = value.as_ref().is_err_and(|err| !err.is_data());
    if !malformed && input::json_has_nul(text) {
        return Err(AppError::validation(vec![FieldError {
            field: "body",
            code: "invalid_characters",
            message: input::NUL_MESSAGE.into(),
        }]));
    }
    // serde reads a struct from an array too (`["ann","secret"]` as a login): every body here is
    // an object.
    if !malformed && !text.trim_start().starts_with('{') {
        return Err(AppError::new(
            ErrorCode::InvalidBody,
            "the body must be a JSON object",
        ));
    }
    value.map_err(|err| {
        let message = input::describe_json_error(&err);
        if err.is_data() {
            AppError::new(ErrorCode::InvalidBody, message)
        } else {
            AppError::new(ErrorCode::InvalidJson, format!("malformed JSON: {message}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct LoginRequest {
        username: String,
    }

    #[test]
    fn refuses_nul_and_names_no_types() {
        let nul = parse::<LoginRequest>(br#"{"username":"a\u0000"}"#).expect_err("refused");
        assert_eq!(nul.code(), ErrorCode::ValidationFailed);
        let shape = parse::<LoginRequest>(b"[1]").expect_err("refused");
        assert_eq!(shape.code(), ErrorCode::InvalidBody);
        let array = parse::<LoginRequest>(br#"["ann"]"#).expect_err("an array is no login");
        assert_eq!(array.code(), ErrorCode::InvalidBody);
        assert!(
            !shape.message().contains("LoginRequest"),
            "{}",
            shape.message()
        );
        assert_eq!(
            parse::<LoginRequest>(br#"{"username":"ann"}"#)
                .map(|b| b.username)
                .ok()
                .as_deref(),
            Some("ann")
        );
    }
}

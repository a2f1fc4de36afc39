pub mod properties;
pub mod reason_codes;

pub mod binary;
pub mod mqtt_binary;
pub mod mqtt_string;
pub mod variable_int;

pub use binary::{
    binary_len, decode_binary, encode_binary, encode_optional_binary, optional_binary_len,
};
pub use mqtt_binary::MqttBinary;
pub use mqtt_string::{decode_string, encode_string, string_len, MqttString};
pub use variable_int::{
    decode_variable_int, encode_variable_int, encoded_variable_int_len, variable_int_len,
    VariableInt, VARIABLE_BYTE_INT_MAX, VARIABLE_INT_MAX,
};

//! certbound as an Envoy dynamic module (`libcertbound.so`, loaded by
//! `envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter`).

pub mod abi;

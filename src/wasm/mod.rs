//! Everything proxy-wasm: the root and HTTP contexts, the host calls, and
//! for native tests a stand-in for the proxy-wasm ABI.

pub mod filter;
#[cfg(target_arch = "wasm32")]
pub mod proxy_host;
#[cfg(not(target_arch = "wasm32"))]
pub mod shim;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(filter::CertboundRoot::new(proxy_host::ProxyHost))
    });
}}

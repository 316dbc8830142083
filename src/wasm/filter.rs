//! The proxy-wasm contexts, and [`ProxyHost`]: the only code that calls the
//! proxy-wasm ABI.
//!
//! The root context validates the configuration and owns the VM state
//! ([`Vm`]); each HTTP context shares it. Both reach Envoy only through
//! the [`Host`] trait, so the native tests run these very contexts against
//! a fake host.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::RefCell;
use std::rc::Rc;

use crate::host::runtime::log_configured;
pub use crate::host::{Host, Step, Vm};

/// The root context: parses and validates the configuration.
pub struct CertboundRoot<H: Host> {
    host: Rc<H>,
    vm: Option<Rc<RefCell<Vm>>>,
}

impl<H: Host> CertboundRoot<H> {
    pub fn new(host: H) -> Self {
        CertboundRoot {
            host: Rc::new(host),
            vm: None,
        }
    }

    /// The HTTP context for one stream. `None` before a good configuration.
    pub fn http_context(&self, context_id: u32) -> Option<CertboundHttp<H>> {
        Some(CertboundHttp {
            host: Rc::clone(&self.host),
            vm: Rc::clone(self.vm.as_ref()?),
            context_id,
        })
    }
}

impl<H: Host> Context for CertboundRoot<H> {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(vm) = &self.vm
            && let Ok(mut vm) = vm.try_borrow_mut()
        {
            vm.on_fetch_response(&*self.host, token_id, body_size);
        }
    }
}

impl<H: Host + 'static> RootContext for CertboundRoot<H> {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let host = &*self.host;
        // None when Envoy gives no configuration: refused by `parse` as empty.
        let bytes = host.plugin_configuration().unwrap_or_default();
        let env = |name: &str| host.env_var(name);
        match crate::policy::parse(&bytes, &env) {
            Ok(policy) => {
                log_configured(host, &policy);
                self.vm = Some(Rc::new(RefCell::new(Vm::new(host, policy))));
                true
            }
            Err(e) => {
                host.log(log::Level::Error, &format!("certbound: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(vm) = &self.vm
            && let Ok(mut vm) = vm.try_borrow_mut()
        {
            vm.on_tick(&*self.host);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.http_context(context_id)
            .map(|c| Box::new(c) as Box<dyn HttpContext>)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP stream.
pub struct CertboundHttp<H: Host> {
    host: Rc<H>,
    vm: Rc<RefCell<Vm>>,
    context_id: u32,
}

impl<H: Host> Context for CertboundHttp<H> {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Ok(mut vm) = self.vm.try_borrow_mut() {
            vm.on_introspection_response(&*self.host, token_id, body_size);
        }
    }

    fn on_done(&mut self) -> bool {
        if let Ok(mut vm) = self.vm.try_borrow_mut() {
            vm.forget(self.context_id);
        }
        true
    }
}

impl<H: Host> CertboundHttp<H> {
    /// A body or trailers of a request that is still paused (or denied)
    /// stay buffered: answering Continue here would resume the stream.
    fn hold_if_undecided(&self) -> Action {
        match self.vm.try_borrow() {
            Ok(vm) if !vm.is_held(self.context_id) => Action::Continue,
            _ => Action::Pause,
        }
    }
}

impl<H: Host> HttpContext for CertboundHttp<H> {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            // Unreachable in a single-threaded VM; fail closed regardless.
            self.host.send_response(500, &[], b"certbound: busy\n");
            return Action::Pause;
        };
        match vm.process(&*self.host, self.context_id, true) {
            Step::Continue => Action::Continue,
            Step::Responded | Step::Waiting => Action::Pause,
        }
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.hold_if_undecided()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.hold_if_undecided()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Ok(mut vm) = self.vm.try_borrow_mut() {
            vm.on_response_headers(&*self.host, self.context_id);
        }
        Action::Continue
    }
}

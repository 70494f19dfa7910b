//! The emulator's own runtime, on which its servers run.

/// The emulator's own runtime; shut down without blocking, so it may be dropped anywhere
/// (also inside the caller's async code, where dropping a `Runtime` would panic).
pub(crate) struct BgRuntime(Option<tokio::runtime::Runtime>);

impl BgRuntime {
    /// Holds `rt` until dropped.
    pub(crate) fn new(rt: tokio::runtime::Runtime) -> Self {
        Self(Some(rt))
    }

    /// The runtime's handle, to spawn the servers on.
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("runtime present until drop")
            .handle()
    }
}

impl Drop for BgRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

//! Fault injection: an object store that fails, or runs a hook, on a chosen call.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use futures_util::stream::BoxStream;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, path::Path,
};

/// An async action run once, before the chosen call goes ahead.
pub type Hook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What happens on the chosen call.
pub enum Fault {
    /// The call fails as a store outage would.
    Fail,
    /// The hook runs, then the call proceeds.
    Hook(Hook),
}

/// Which call: the `nth` (1-based) put or get whose key contains `fragment`.
pub struct Trigger {
    /// `put` or `get`.
    pub on_put: bool,
    /// Part of the key to match.
    pub fragment: String,
    /// Which matching call.
    pub nth: usize,
}

/// Wraps a store and injects one fault.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    trigger: Trigger,
    seen: AtomicUsize,
    fault: Mutex<Option<Fault>>,
    fired: AtomicUsize,
}

impl FaultyStore {
    /// `inner` with `fault` injected at `trigger`.
    pub fn new(inner: Arc<dyn ObjectStore>, trigger: Trigger, fault: Fault) -> Arc<Self> {
        Arc::new(Self {
            inner,
            trigger,
            seen: AtomicUsize::new(0),
            fault: Mutex::new(Some(fault)),
            fired: AtomicUsize::new(0),
        })
    }

    /// How many times the fault fired (0 or 1).
    pub fn fired(&self) -> usize {
        self.fired.load(Ordering::SeqCst)
    }

    async fn maybe_fault(&self, on_put: bool, location: &Path) -> Result<()> {
        if on_put != self.trigger.on_put || !location.as_ref().contains(&self.trigger.fragment) {
            return Ok(());
        }
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 != self.trigger.nth {
            return Ok(());
        }
        let fault = self.fault.lock().ok().and_then(|mut f| f.take());
        match fault {
            Some(Fault::Fail) => {
                self.fired.fetch_add(1, Ordering::SeqCst);
                Err(object_store::Error::Generic {
                    store: "faulty",
                    source: format!("injected failure at {location}").into(),
                })
            }
            Some(Fault::Hook(hook)) => {
                self.fired.fetch_add(1, Ordering::SeqCst);
                hook().await;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.maybe_fault(true, location).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.maybe_fault(true, location).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.maybe_fault(false, location).await?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

//! TEMPORARY: an in-memory metadata log standing in for the quorum until it is merged.

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use parking_lot::Mutex;
use std::sync::Arc;
use tokio::sync::watch;
use weir_metadata::active::{AppendError, BoxFuture, Leader, MetadataLog};
use weir_metadata::{MetadataImage, MetadataRecord};

struct SoloLog {
    image: Mutex<Arc<MetadataImage>>,
    images: watch::Sender<Arc<MetadataImage>>,
}

impl MetadataLog for SoloLog {
    fn image(&self) -> Arc<MetadataImage> {
        self.image.lock().clone()
    }

    fn append(&self, records: Vec<MetadataRecord>) -> BoxFuture<'_, Result<u64, AppendError>> {
        Box::pin(async move {
            let mut image = self.image.lock();
            let offset = image.offset() + 1;
            let (next, result) = image.apply(offset, &records);
            *image = Arc::new(next);
            self.images.send_replace(image.clone());
            result.map(|()| offset).map_err(AppendError::Rejected)
        })
    }
}

pub(crate) type Started = (
    Arc<dyn MetadataLog>,
    watch::Receiver<Arc<MetadataImage>>,
    watch::Receiver<Leader>,
);

pub(crate) fn start(config: &BrokerConfig) -> Result<Started, BrokerError> {
    let empty = Arc::new(MetadataImage::empty());
    let (images, rx) = watch::channel(empty.clone());
    let log = Arc::new(SoloLog {
        image: Mutex::new(empty),
        images,
    });
    let (_leader_tx, leader_rx) = watch::channel(Leader {
        leader: Some(u64::try_from(config.node_id).unwrap_or(0)),
        is_self: true,
    });
    std::mem::forget(_leader_tx);
    Ok((log, rx, leader_rx))
}

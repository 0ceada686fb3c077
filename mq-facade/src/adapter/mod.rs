//! One adapter per backend crate, each behind the feature of the same name. Each maps its
//! crate's API onto the facade contract and its error enum onto [`crate::Error`].

#[cfg(feature = "amqp")]
pub(crate) mod amqp;
#[cfg(feature = "ddmq")]
pub(crate) mod ddmq;
#[cfg(feature = "duraqueue")]
pub(crate) mod duraqueue;

#[cfg(feature = "dmq")]
pub(crate) mod dmq;
#[cfg(feature = "dsmq")]
pub(crate) mod dsmq;
#[cfg(feature = "shmq")]
pub(crate) mod shmq;

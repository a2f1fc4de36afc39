use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::mqttbytes::{self, v4::*};
use crate::{Incoming, MqttState, StateError};

/// Network transforms packets <-> frames efficiently. It takes
/// advantage of pre-allocation, buffering and vectorization when
/// appropriate to achieve performance
pub struct Network {
    /// Frame MQTT packets from network connection
    framed: Framed<ReadAhead<Box<dyn AsyncReadWrite>>, Codec>,
    /// Maximum readv count
    max_readb_count: usize,
}

impl Network {
    pub fn new(
        socket: impl AsyncReadWrite + 'static,
        max_incoming_size: usize,
        max_outgoing_size: usize,
    ) -> Network {
        let socket = Box::new(socket) as Box<dyn AsyncReadWrite>;
        let codec = Codec {
            max_incoming_size,
            max_outgoing_size,
        };
        let framed = Framed::new(ReadAhead::new(socket), codec);

        Network {
            framed,
            max_readb_count: 10,
        }
    }

    /// mqpaxos patch: see [`crate::MqttOptions::set_read_ahead`].
    pub fn set_read_ahead(&mut self, limit: usize) {
        self.framed.get_mut().set_limit(limit);
    }

    /// Reads and returns a single packet from network
    pub async fn read(&mut self) -> Result<Incoming, StateError> {
        match self.framed.next().await {
            Some(Ok(packet)) => Ok(packet),
            Some(Err(mqttbytes::Error::InsufficientBytes(_))) => unreachable!(),
            Some(Err(e)) => Err(StateError::Deserialization(e)),
            None => Err(StateError::ConnectionAborted),
        }
    }

    /// Read packets in bulk. This allow replies to be in bulk. This method is used
    /// after the connection is established to read a bunch of incoming packets
    pub async fn readb(&mut self, state: &mut MqttState) -> Result<(), StateError> {
        // wait for the first read
        let mut res = self.framed.next().await;
        let mut count = 1;
        loop {
            match res {
                Some(Ok(packet)) => {
                    if let Some(outgoing) = state.handle_incoming_packet(packet)? {
                        self.write(outgoing).await?;
                    }

                    count += 1;
                    if count >= self.max_readb_count {
                        break;
                    }
                }
                Some(Err(mqttbytes::Error::InsufficientBytes(_))) => unreachable!(),
                Some(Err(e)) => return Err(StateError::Deserialization(e)),
                None => return Err(StateError::ConnectionAborted),
            }
            // do not wait for subsequent reads
            match self.framed.next().now_or_never() {
                Some(r) => res = r,
                _ => break,
            };
        }

        Ok(())
    }

    /// Serializes packet into write buffer
    pub async fn write(&mut self, packet: Packet) -> Result<(), StateError> {
        self.framed
            .feed(packet)
            .await
            .map_err(StateError::Deserialization)
    }

    pub async fn flush(&mut self) -> Result<(), crate::state::StateError> {
        self.framed
            .flush()
            .await
            .map_err(StateError::Deserialization)
    }
}

pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T> AsyncReadWrite for T where T: AsyncRead + AsyncWrite + Send + Unpin {}

/// mqpaxos patch: a stream that, while a write (or flush) waits for the peer to take the
/// bytes, reads what the peer sends into a buffer of its own, at most `limit` bytes, which
/// the next read returns first. The event loop writes a batch to the end before it reads
/// again; against a broker that likewise reads only a bounded amount while its own write to
/// this client waits, two large messages crossing on one connection would leave each side
/// waiting for the other until a timeout dropped the connection. Reading here while the
/// write waits lets the broker's write finish, so the broker reads again and this write
/// finishes too. The bytes are not parsed here, only held: the codec sees them in order.
pub struct ReadAhead<S> {
    inner: S,
    stash: bytes::BytesMut,
    /// 0: never read ahead (upstream's behaviour).
    limit: usize,
    /// The peer's end of stream (or a read error's kind), seen while reading ahead; handed
    /// to the next read once the stash is empty.
    end: Option<Option<std::io::ErrorKind>>,
}

impl<S> ReadAhead<S> {
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    pub(crate) fn new(inner: S) -> Self {
        ReadAhead {
            inner,
            stash: bytes::BytesMut::new(),
            limit: 0,
            end: None,
        }
    }
}

impl<S: AsyncRead + Unpin> ReadAhead<S> {
    /// While a write is pending: reads into the stash. True when it read something (the
    /// caller tries its write again); false when there is nothing to read now (the read's
    /// waker is registered along with the write's), the stash is full, or the stream ended.
    fn read_ahead(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        if self.end.is_some() || self.stash.len() >= self.limit {
            return false;
        }
        let room = (self.limit - self.stash.len()).min(64 * 1024);
        // Straight into the stash's spare room: no buffer to zero and copy on every try.
        self.stash.reserve(room);
        let mut into = bytes::BufMut::limit(&mut self.stash, room);
        match tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut self.inner), cx, &mut into) {
            // `room` is not zero (checked above), so 0 bytes read is the end of the stream.
            std::task::Poll::Ready(Ok(0)) => {
                self.end = Some(None);
                false
            }
            std::task::Poll::Ready(Ok(_)) => true,
            std::task::Poll::Ready(Err(e)) => {
                self.end = Some(Some(e.kind()));
                false
            }
            std::task::Poll::Pending => false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !this.stash.is_empty() {
            let n = this.stash.len().min(buf.remaining());
            buf.put_slice(&this.stash.split_to(n));
            return std::task::Poll::Ready(Ok(()));
        }
        match this.end.take() {
            Some(None) => std::task::Poll::Ready(Ok(())),
            Some(Some(kind)) => std::task::Poll::Ready(Err(kind.into())),
            None => std::pin::Pin::new(&mut this.inner).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        loop {
            match std::pin::Pin::new(&mut this.inner).poll_write(cx, buf) {
                std::task::Poll::Pending if this.read_ahead(cx) => continue,
                other => return other,
            }
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            match std::pin::Pin::new(&mut this.inner).poll_flush(cx) {
                std::task::Poll::Pending if this.read_ahead(cx) => continue,
                other => return other,
            }
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        loop {
            match std::pin::Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
                std::task::Poll::Pending if this.read_ahead(cx) => continue,
                other => return other,
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

//! The accepted connections the gRPC server reads and writes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted TCP connection that reports no vectored writes, so h2 copies DATA payloads
/// under 1 KiB into its frame buffer instead of chaining them (`CHAIN_THRESHOLD` in h2's
/// codec/framed_write.rs). A small unary response then leaves in one write, not two.
///
/// NOTE: a payload of 1 KiB or more now leaves in one write more than with vectored writes.
#[derive(Debug)]
pub struct AcceptedStream(TcpStream);

impl AcceptedStream {
    pub fn new(stream: TcpStream) -> AcceptedStream {
        AcceptedStream(stream)
    }
}

impl AsyncRead for AcceptedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for AcceptedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl Connected for AcceptedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn passes_bytes_and_peer_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let mut accepted = AcceptedStream::new(accepted);

        assert!(!accepted.is_write_vectored());
        assert_eq!(accepted.connect_info().remote_addr(), Some(client.local_addr().unwrap()));

        accepted.write_all(b"response").await.unwrap();
        accepted.flush().await.unwrap();
        let mut received = [0u8; 8];
        client.read_exact(&mut received).await.unwrap();
        assert_eq!(&received, b"response");

        client.write_all(b"request").await.unwrap();
        let mut read = [0u8; 7];
        accepted.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"request");
    }
}

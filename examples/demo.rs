//! Before/after: the same small app served by plain hyper and by hyper with
//! `DrainBodyLayer`, replaying the seed scenario against both.
//!
//! Run with `cargo run --example demo`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use linger::{DrainBody, DrainBodyLayer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;

async fn app<B>(request: Request<B>) -> Result<Response<String>, Infallible>
where
    B: http_body::Body,
{
    let reply = match request.uri().path() {
        "/consume" => match request.into_body().collect().await {
            Ok(body) => format!("consumed {} bytes\n", body.to_bytes().len()),
            Err(_) => "body error\n".to_owned(),
        },
        _ => "ignored the body\n".to_owned(),
    };
    Ok(Response::new(reply))
}

async fn serve(with_linger: bool) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let io = TokioIo::new(stream);
            let http = hyper::server::conn::http1::Builder::new();
            tokio::spawn(async move {
                if with_linger {
                    let service = ServiceBuilder::new()
                        .layer(DrainBodyLayer::new(256 * 1024))
                        .service_fn(app::<DrainBody<hyper::body::Incoming>>);
                    let _ = http
                        .serve_connection(io, TowerToHyperService::new(service))
                        .await;
                } else {
                    let service = hyper::service::service_fn(app::<hyper::body::Incoming>);
                    let _ = http.serve_connection(io, service).await;
                }
            });
        }
    });
    Ok(addr)
}

/// Seed 000: `POST /ignore` then `POST /consume` on one connection.
async fn seed_000(addr: SocketAddr) -> String {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(b"POST /ignore HTTP/1.1\r\nHost: demo\r\nContent-Length: 7\r\n\r\nfoo=bar")
            .await?;
        let first = read_response(&mut stream).await?;
        stream
            .write_all(b"POST /consume HTTP/1.1\r\nHost: demo\r\nContent-Length: 7\r\n\r\na=b&x=y")
            .await?;
        let second = read_response(&mut stream).await?;
        std::io::Result::Ok((first, second))
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok((Some(_), Some(_)))) => "both answered, connection reused".to_owned(),
        Ok(Ok((Some(_), None))) => "connection closed, client must reconnect".to_owned(),
        Ok(Ok(_)) => "no response".to_owned(),
        Ok(Err(error)) => format!("error: {error}"),
        Err(_) => "timed out".to_owned(),
    }
}

/// Reads one response with a `Content-Length` body; `None` on EOF first.
async fn read_response(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buffer = Vec::new();
    let mut byte = [0u8; 1];
    while !buffer.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        buffer.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buffer).into_owned();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    Ok(Some(head))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let plain = serve(false).await?;
    let linger = serve(true).await?;
    println!(
        "{:<40} | {:<42} | {}",
        "scenario", "plain hyper", "with linger"
    );
    let scenario = "ignored 7-byte body, then a second POST";
    println!(
        "{:<40} | {:<42} | {}",
        scenario,
        seed_000(plain).await,
        seed_000(linger).await
    );
    Ok(())
}

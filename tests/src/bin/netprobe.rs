//! A tiny TCP echo server and client for the network-namespace tests (no `ping` or `nc` is
//! guaranteed on CI machines, and a test thread cannot enter a namespace without unsafe code).
//!
//! - `netprobe serve <addr>`: accept connections forever, echo every byte back;
//! - `netprobe probe <addr> <timeout_ms>`: connect, send a line, expect it back; exit 0 when
//!   it came back within the timeout, 1 otherwise.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    println!("serving {addr}");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stream, &mut buf) {
                if n == 0 || stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    Ok(())
}

fn probe(addr: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"murmur-probe\n")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line == "murmur-probe\n" {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("unexpected echo {line:?}")))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(2).and_then(|a| a.parse::<SocketAddr>().ok());
    let result = match (args.get(1).map(String::as_str), addr) {
        (Some("serve"), Some(addr)) => serve(addr),
        (Some("probe"), Some(addr)) => {
            let ms = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(1000);
            probe(addr, Duration::from_millis(ms))
        }
        _ => {
            eprintln!("usage: netprobe serve <addr> | netprobe probe <addr> <timeout_ms>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netprobe: {e}");
            ExitCode::FAILURE
        }
    }
}

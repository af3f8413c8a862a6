//! The server binary started for a test, on a port of its own, killed when dropped.
#![allow(dead_code)] // each test binary uses its own part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A server started with `args`, `OPENBLAS_CORETYPE` set to `core_type` or unset; killed on drop.
pub struct Running {
    child: Child,
    pub address: String,
    pub banner: String,
}

impl Running {
    pub fn start(args: &[&str], core_type: Option<&str>) -> Running {
        let mut command = Command::new(env!("CARGO_BIN_EXE_doctrove-model"));
        command
            .args(["--listen", "127.0.0.1:0", "--model"])
            .arg(doctrove_model::model_dir_from_env())
            .args(args)
            .env_remove("OPENBLAS_CORETYPE")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(core_type) = core_type {
            command.env("OPENBLAS_CORETYPE", core_type);
        }
        let mut child = command.spawn().expect("start doctrove-model");
        let mut banner = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut banner).unwrap();
        let address = banner
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no address in the startup line {banner:?}"))
            .to_string();
        Running { child, address, banner }
    }

    pub fn request(&self, method: &str, path: &str, body: &str) -> Value {
        exchange(&self.address, method, path, body).1
    }
}

/// One request to the server at `address` (host:port) on a connection of its own: the status
/// and the JSON answer.
pub fn exchange(address: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, json) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(json).unwrap())
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The TCP connections open at this moment, from the kernel's table (`/proc/net/tcp`,
//! which shows the sockets of the reader's network namespace).

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::error::Error;

/// `st` of an established connection in `/proc/net/tcp`.
const ESTABLISHED: &str = "01";

/// The clients of every connection established to `server` right now, read from the
/// server's side (local address `server`).
pub(crate) fn established_clients(server: SocketAddrV4) -> Result<Vec<SocketAddrV4>, Error> {
    let table = std::fs::read_to_string("/proc/net/tcp")
        .map_err(|e| Error::io("cannot read /proc/net/tcp", e))?;
    Ok(clients_in(&table, server))
}

/// The remote ends of the established sockets whose local end is `server`, in a
/// `/proc/net/tcp` table.
fn clients_in(table: &str, server: SocketAddrV4) -> Vec<SocketAddrV4> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let local = parse_addr(fields.next()?)?;
            let remote = parse_addr(fields.next()?)?;
            let state = fields.next()?;
            (state == ESTABLISHED && local == server).then_some(remote)
        })
        .collect()
}

/// `0100007F:1538`: the address as the kernel's `u32` in host byte order (the bytes of the
/// network-order address), then the port in hexadecimal.
fn parse_addr(s: &str) -> Option<SocketAddrV4> {
    let (ip, port) = s.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddrV4::new(Ipv4Addr::from(ip.to_ne_bytes()), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn established_clients_of_one_server_address() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1538 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0200007F:1538 0100007F:D2A6 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:D2A8 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:1538 0100007F:D2AA 06 00000000:00000000 00:00000000 00000000     0        0 0 3 0000000000000000
";
        let primary = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0x1538);
        assert_eq!(
            clients_in(table, primary),
            [SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0xD2A4)]
        );
        let standby = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 0x1538);
        assert_eq!(
            clients_in(table, standby),
            [SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0xD2A6)]
        );
    }
}

//! Azure Database for PostgreSQL: the front that checks tokens at login as Azure does,
//! the wire protocol it speaks, and the real local PostgreSQL cluster behind it.

pub(crate) mod cluster;
pub(crate) mod front;
pub(crate) mod pgwire;

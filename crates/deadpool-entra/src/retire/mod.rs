//! Retirement in this pool: the rule itself (the policy, each connection's plan, and
//! whether a replacement can log in) is the token layer's, shared with the sqlx adapter
//! ([`entra_pg_token::retire`]); here it is enforced at checkout (`pre_recycle` hook,
//! [`table`]) and by a background sweeper, which also has replacements logged in ahead
//! of need ([`spares`]).

pub(crate) mod first_due;
pub(crate) mod spares;
pub(crate) mod survey;
pub(crate) mod table;

pub use entra_pg_token::retire::RetirePolicy;
pub(crate) use entra_pg_token::retire::{
    RetirePlan, RetireReason, SpreadSequence, gate, health, plan,
};
pub(crate) use table::ConnTable;

//! Relay delivery: where mail for a domain goes (DNS, MX rules, route
//! overrides) and what comes back when it cannot be delivered (DSNs).

pub mod dns;
pub mod dsn;
pub mod mx;
pub mod testdns;

//! Integration tests that drive the real `withlock` binary, one module per
//! topic. Tests marked "needs root" fail (never skip) when not run as root.

mod bad_input;
mod cancel_running;
mod etcd;
mod etcd_faults;
mod etcd_other_users;
mod etcd_security;
mod exclusion;
mod exit_status;
mod fairness;
mod foreign_symlinks;
mod guide;
mod help_text;
mod hold;
mod holder_message;
mod hostile_users;
mod lifetime;
mod listing;
mod max_and_shared;
mod multi_user;
mod once_per;
mod postgres;
mod postgres_listing;
mod postgres_loss;
mod postgres_several;
mod postgres_state;
mod security;
mod several_locks;
mod signals;
mod slots;
mod socket_locks;
mod supersede;
mod support;
mod time_limit;
mod wait_answers;
mod waiting_line;

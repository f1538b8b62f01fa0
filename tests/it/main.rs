//! Tests that run the real `yui` binary as separate processes: what an
//! administrator does, and what happens when things go wrong.

mod accounts;
mod actions;
mod attachments;
mod backup;
mod browser;
mod cli;
mod contract;
mod crash;
mod crash_loop;
mod demo;
mod disk_full;
mod egress;
mod faults;
mod federation;
mod feeds;
mod guardrails;
mod limits;
mod logins;
mod logs;
mod membership;
mod monitoring;
mod service;
mod spreadsheets;
mod towns;

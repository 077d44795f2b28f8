// tamper_kit.hpp — what an attacker with root who has read every document would do to a
// copy of a cairn log, and the verdict of `cairn verify` on it.
//
// Glossary:
//   golden   a real log made once by the real cairnd: 399 events over several epochs, a
//            checkpoint saved mid-way, an older copy of the database (for rollback), and
//            a clean stop (final seal)
//   attack   a copy of the golden log in a fresh directory, changed by SQL or by hand
//   rebuild  rewriting the whole events table and tree from a list of bodies, with every
//            column, leaf hash and interior node recomputed as cairnd would: the attacker
//            who knows the format leaves nothing for a naive check to find
//   verdict  the JSON report of `cairn verify --db COPY --key KEY`: valid and failure class
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <vector>

namespace cairn::tamper {

struct Golden {
  std::string dir;         // cairn.db, cairn.db.key
  std::string key;         // the line `cairn key` printed
  std::string checkpoint;  // a checkpoint saved after the first third
  std::string old_db;      // a consistent copy of the database taken at that time
  std::string old_key;     // the key file as it was then
  uint64_t records = 0;
};

// Sends n events through `cairn send --stdin` to the daemon at `socket`; returns the
// highest seq acked.
uint64_t send_events(const std::string& socket, const std::string& scratch_dir, int from, int n);
// Waits (a condition on the file, with a deadline) until a seal exists past `seq`.
void wait_seal_after(const std::string& db, uint64_t seq);

// Builds the golden log once per test run (first caller; others wait on a lock).
const Golden& golden();

// A fresh directory holding a copy of the golden cairn.db and cairn.db.key.
std::string copy_golden(const std::string& name);

struct Verdict {
  int exit = -1;
  bool valid = false;
  std::string failure;  // the class
  std::string reason;
  std::string json;     // all of it, for messages
};
// Runs `cairn verify --db DIR/cairn.db --key KEY -o json` plus `extra` arguments (KEY:
// the golden log's unless given).
Verdict verify(const std::string& dir, const std::vector<std::string>& extra = {}, const std::string& key = {});

// An open read-write connection to DIR/cairn.db with the append-only triggers dropped.
sqlite3* open_rw(const std::string& dir);
void exec(sqlite3* db, const std::string& sql);

struct Rec {
  std::string body;  // canonical msgpack
};
std::vector<Rec> read_records(sqlite3* db);
// Rewrites events and tree from `recs` (seq = position + 1), every derived value recomputed
// (the query index too).
void rebuild(sqlite3* db, const std::vector<Rec>& recs);

// Decoded-and-reencoded body with top-level string key `key` set to `value`.
std::string with_str(const std::string& body, const std::string& key, const std::string& value);
std::string type_of(const std::string& body);
// The body without top-level key `key`.
std::string without(const std::string& body, const std::string& key);
// For a seal body: the same seal with `root` replaced and re-signed with `sk` (64-byte
// libsodium secret key) under `origin`; also re-signs its checkpoint signature.
std::string resign_seal(const std::string& body, const std::string& origin, const uint8_t* sk,
                        const uint8_t* new_root);
// The current epoch's secret key from a key file (what root can read).
std::vector<uint8_t> current_secret(const std::string& key_file);

}  // namespace cairn::tamper

// sealer.hpp — closes epochs: seal records, key handover, start-up reconciliation.
//
// Glossary (see also keys.hpp, seal/record.hpp):
//   seal      a record that commits to the tree of every record before it, signed with
//             the epoch's key, naming the next epoch's public key
//   handover  the three steps of a seal, ordered so a crash anywhere leaves a state
//             we can continue from:
//               1. the next seed is written to the key file (pending), fdatasync;
//               2. the seal record is committed to the database (fsync);
//               3. the key file moves to the next epoch, overwriting the old seed.
//             A crash after 1 seals again with the same keys; after 2, reconcile()
//             finds the seal in the database and finishes step 3.
//   reconcile comparing the key file with the database at start-up (and after the
//             writer reopens the database): a database behind what the key file says
//             was sealed is refused unless the operator accepts the loss.
//
// Threads: used by the writer thread only (and by Daemon before the writer starts).
#pragma once

#include <memory>
#include <string>

#include "../protocol/event.hpp"
#include "../protocol/result.hpp"
#include "config.hpp"
#include "keys.hpp"
#include "store/store.hpp"

namespace cairn::daemon {

class Sealer {
 public:
  // Loads or creates the key file for `store`'s log and reconciles the two; may append
  // the records of an accepted loss. Errors say what is wrong and how to go on.
  static Result<std::unique_ptr<Sealer>, std::string> open(const Config& config, store::Store& store);

  // Start-up honesty (see the glossary). Also run after the writer reopens the store.
  Result<Ok, std::string> reconcile(store::Store& store, bool accept_loss);

  // Closes the current epoch: all three handover steps. Call with no transaction open.
  // A store error is returned as such (the caller fails and reopens the store); a key
  // file error is returned as a StoreError of kind io.
  store::StoreResult<Ok> seal(store::Store& store);

  // Records a client event's `received`, so a seal is never dated before its records.
  void saw(int64_t received) {
    if (received > newest_received_) newest_received_ = received;
  }
  const KeyPublic& keys() const { return keys_->state(); }
  // When the open epoch began (the last seal's time): no record of it may be older.
  int64_t window_start() const { return keys_->state().window_start; }
  int64_t interval_ns() const { return interval_ns_; }

 private:
  Sealer() = default;
  store::StoreResult<Ok> record_loss(store::Store& store, uint64_t head, const KeyPublic& k);

  std::unique_ptr<KeyFile> keys_;
  std::string boot_id_;
  int64_t interval_ns_ = 0;
  int64_t newest_received_ = 0;
};

// The trusted stamp of cairnd's own records: its pid/uid/gid, comm "cairnd".
proto::Trusted own_stamp(int64_t received);

// "cairn/<machine-id>" (or "cairn/<hostname>" without /etc/machine-id).
std::string default_origin();

}  // namespace cairn::daemon

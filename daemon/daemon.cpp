#include "daemon.hpp"

#include <csignal>

#include "log.hpp"
#include "session.hpp"

namespace cairn::daemon {

Daemon::Daemon(Config config, std::vector<std::string> args)
    : config_(std::move(config)), args_(std::move(args)) {}

Daemon::~Daemon() {
  if (loop_ready_) {
    // Close whatever is left (only on an early start-up failure) and drain the loop.
    uv_walk(&loop_, [](uv_handle_t* h, void*) noexcept {
      if (!uv_is_closing(h)) uv_close(h, nullptr);
    }, nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
}

std::string Daemon::status_line() const {
  WriterFigures f = writer_->figures();
  return "seq " + std::to_string(f.head_seq) + ", queue " + std::to_string(f.queue_depth) +
         ", connections " + std::to_string(server_ ? server_->sessions() : 0) + ", commits " +
         std::to_string(f.commits) + ", storage errors " + std::to_string(f.storage_errors) +
         (f.lost_nondurable ? ", LOST durable:false " + std::to_string(f.lost_nondurable) : std::string()) +
         ", seals " + std::to_string(f.seals) + (disk_ ? [&] {
           std::string note = disk_->status_note();
           return note.empty() ? note : ", " + note;
         }() : std::string());
}

int Daemon::run() {
  auto store = store::Store::open(config_.db_path, store::OpenMode::writer, {.combine_wal_writes = true});
  if (!store) {
    log_msg(LogLevel::err, "cannot open database %s: %s", config_.db_path.c_str(),
            store.error().message.c_str());
    return 1;
  }
  // The time->seq and per-type count tables behind fast queries and stats (issue 12),
  // created and filled once on a database written before they existed.
  auto qi = store::ensure_query_indexes(*store.value());
  if (!qi) {
    log_msg(LogLevel::err, "cannot build the query index of %s: %s", config_.db_path.c_str(),
            qi.error().message.c_str());
    return 1;
  }
  if (qi.value() > 0)
    log_msg(LogLevel::info, "query index built for %llu existing events",
            static_cast<unsigned long long>(qi.value()));
  log_msg(LogLevel::info, "database %s open; chain head seq %llu; flush mode %s",
          config_.db_path.c_str(), static_cast<unsigned long long>(store.value()->head_seq()),
          flush_mode_name(config_.flush_mode));

  int rc = uv_loop_init(&loop_);
  if (rc < 0) {
    log_msg(LogLevel::err, "uv_loop_init: %s", uv_strerror(rc));
    return 1;
  }
  loop_ready_ = true;

  std::unique_ptr<Sealer> sealer;
  if (config_.seal_interval_ms > 0) {
    auto sl = Sealer::open(config_, *store.value());
    if (!sl) {
      log_msg(LogLevel::err, "cannot start sealing: %s", sl.error().c_str());
      return 1;
    }
    sealer = std::move(sl.value());
    const KeyPublic& k = sealer->keys();
    log_msg(LogLevel::info, "log %s: epoch %llu, sealed through seq %llu; key file %s", k.origin.c_str(),
            static_cast<unsigned long long>(k.epoch), static_cast<unsigned long long>(k.sealed_seq),
            key_file_path(config_).c_str());
  }
  disk_ = std::make_unique<DiskGuard>(&loop_, config_);
  if ((rc = disk_->start()) < 0) {
    log_msg(LogLevel::err, "cannot start the disk guard: %s", uv_strerror(rc));
    return 1;
  }
  auto ret = Retention::create(config_);
  if (!ret) {
    log_msg(LogLevel::err, "%s", ret.error().c_str());
    return 1;
  }
  retention_ = std::move(ret.value());
  writer_ = std::make_unique<Writer>(
      &loop_, std::move(store.value()), std::move(sealer), config_,
      [this](std::vector<WriteResult>& results) {
        uint64_t top = 0;
        for (auto& r : results) {
          if (r.ok) top = std::max(top, r.seq);
          r.session->complete_write(r);
        }
        if (server_) server_->writer_progress();
        // Waiting queries (cairn query -f) past their cursor run again (reader.hpp).
        if (reader_ && top > 0) reader_->events_committed(top);
      },
      [this](bool fatal) { on_writer_stopped(fatal); });
  reader_ = std::make_unique<Reader>(&loop_, config_.db_path, config_.query_threads,
                                     uint64_t{config_.query_mmap_mb} << 20, config_.limits.max_frame,
                                     [](std::vector<ReadResult>& results) {
                                       for (auto& r : results) r.session->complete_read(r);
                                     });
  Server::Hooks hooks;
  hooks.all_drained = [this] { on_all_drained(); };
  hooks.all_closed = [this] { on_all_closed(); };
  writer_->attach_disk_guard(disk_.get());
  server_ = std::make_unique<Server>(&loop_, config_, *writer_, *reader_, *disk_, std::move(hooks));

  if (retention_) writer_->set_retention(retention_.get());
  if ((rc = writer_->start()) < 0 || (rc = reader_->start()) < 0) {
    log_msg(LogLevel::err, "cannot start worker threads: %s", uv_strerror(rc));
    return 1;
  }
  if (retention_) retention_->start();

  uv_signal_init(&loop_, &sigterm_);
  uv_signal_init(&loop_, &sigint_);
  uv_signal_init(&loop_, &sighup_);
  sigterm_.data = sigint_.data = sighup_.data = this;
  uv_signal_start(&sigterm_, &Daemon::on_signal, SIGTERM);
  uv_signal_start(&sigint_, &Daemon::on_signal, SIGINT);
  uv_signal_start(&sighup_, &Daemon::on_reload, SIGHUP);
  uv_timer_init(&loop_, &deadline_);
  deadline_.data = this;
  uv_timer_init(&loop_, &read_deadline_);
  read_deadline_.data = this;

  ActivatedSocket act = activated_socket();
  auto listening = act.error.empty() ? server_->listen(act.fd)
                                     : Result<Ok, std::string>(Err{act.error});
  if (!listening) {
    log_msg(LogLevel::err, "%s", listening.error().c_str());
    exit_code_ = 1;
    // The normal shutdown path closes the database cleanly before we exit.
    begin_shutdown("start-up failure");
  } else {
    log_msg(LogLevel::notice, "listening on %s",
            act.fd >= 0 ? "the socket systemd passed" : config_.socket_path.c_str());
    notifier_ = std::make_unique<Notifier>(
        &loop_, [this] { return status_line(); },
        [this](int64_t limit_ns) { return !writer_->stuck(limit_ns); });
    notifier_->ready();
  }

  uv_run(&loop_, UV_RUN_DEFAULT);
  log_msg(LogLevel::notice, "exiting with status %d", exit_code_);
  return exit_code_;
}

void Daemon::on_signal(uv_signal_t* h, int signum) noexcept {
  auto* self = static_cast<Daemon*>(h->data);
  if (self->stopping_) {
    log_msg(LogLevel::notice, "%s again: still flushing; the flush is never skipped",
            strsignal(signum));
    return;
  }
  self->begin_shutdown(strsignal(signum));
}

// Runs on the loop, like every reader of the options apply_reload changes. The file is
// read again with the flags cairnd was started with, so a flag still wins over the file.
void Daemon::on_reload(uv_signal_t* h, int) noexcept {
  auto* self = static_cast<Daemon*>(h->data);
  if (self->stopping_) return;
  auto parsed = parse_args(self->args_);
  if (!parsed || parsed.value().outcome != ParseOutcome::run) {
    std::string why = parsed ? std::string("--help/--version") : parsed.error();
    for (char& c : why)
      if (c == '\n') c = ';';
    log_msg(LogLevel::err, "reload: configuration not changed: %s", why.c_str());
    if (self->notifier_) self->notifier_->status("reload failed; configuration not changed");
    return;
  }
  ReloadOutcome r = apply_reload(self->config_, parsed.value().config);
  log_set_verbose(self->config_.verbose);
  if (self->server_) self->server_->limits_changed();
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& k : v) s += (s.empty() ? "" : ", ") + k;
    return s.empty() ? std::string("nothing") : s;
  };
  for (const auto& key : r.restart)
    log_msg(LogLevel::warning, "reload: %s changed but cannot change while cairnd runs; restart to apply it",
            key.c_str());
  std::string summary = "reloaded " +
                        (parsed.value().config_file.empty() ? std::string("(no config file)")
                                                             : parsed.value().config_file) +
                        ": applied " + list(r.applied) + "; needs a restart: " + list(r.restart);
  log_msg(LogLevel::notice, "%s", summary.c_str());
  if (self->notifier_) self->notifier_->status(summary);
}

void Daemon::begin_shutdown(const char* why) {
  stopping_ = true;
  log_msg(LogLevel::notice, "%s: stop accepting, drain, commit, ack, close", why);
  if (notifier_) notifier_->stopping();
  // Reads not yet started are answered shutting_down (through the reader's mailbox),
  // and so is every read that arrives from now on; the running ones get the linger.
  reader_->cancel_all();
  // Always armed, also for a linger of 0 (then they fire on the next turn of the loop):
  // a peer that sent half a frame, or a verify walking a big log, must not hold the
  // shutdown.
  uv_timer_start(&deadline_, &Daemon::on_deadline, config_.shutdown_linger_ms, 0);
  uv_timer_start(&read_deadline_, &Daemon::on_read_deadline, config_.shutdown_linger_ms, 0);
  server_->begin_shutdown();
  // Connections pushed back on a full disk must not wait out the drain deadline: their
  // appends are now refused storage_full (DiskGuard::admit during a drain).
  disk_->release_held();
}

void Daemon::on_deadline(uv_timer_t* t) noexcept {
  auto* self = static_cast<Daemon*>(t->data);
  if (!self->writer_stopped_) {
    log_msg(LogLevel::warning, "drain deadline passed; partial frames are dropped unanswered");
    self->server_->force_drained();
  } else {
    log_msg(LogLevel::warning, "clients did not read their replies in time; closing them");
    self->reader_->interrupt_running();
    self->server_->close_all_now();
  }
}

void Daemon::on_read_deadline(uv_timer_t* t) noexcept {
  auto* self = static_cast<Daemon*>(t->data);
  // Interrupted reads come back cancelled and are answered shutting_down.
  self->reader_->interrupt_running();
}

void Daemon::on_all_drained() {
  log_msg(LogLevel::info, "all connections drained; final commit");
  writer_->stop();
}

void Daemon::on_writer_stopped(bool fatal) {
  writer_stopped_ = true;
  if (fatal) {
    exit_code_ = 1;
    if (!stopping_) {
      // The store could not be reopened after a storage error: let systemd restart us.
      begin_shutdown("storage failure");
      // The writer is gone, so nothing will drain into it; skip straight to closing.
    }
  }
  // Sessions paused on the writer queue: it is gone, so nothing else would wake them.
  server_->writer_progress();
  // Never blocks the loop (the watchdog keeps being fed): the reader finishes its running
  // requests, bounded by read_deadline_, and reports back.
  reader_->stop([this] {
    reader_stopped_ = true;
    if (all_closed_) finish();
  });
  log_msg(LogLevel::info, "final commit done; sending remaining replies");
  uv_timer_stop(&deadline_);
  uv_timer_start(&deadline_, &Daemon::on_deadline, config_.shutdown_linger_ms, 0);
  server_->close_all_after_flush();
}

void Daemon::on_all_closed() {
  if (!writer_stopped_) return;
  all_closed_ = true;
  if (reader_stopped_) finish();
}

void Daemon::finish() {
  if (finished_) return;
  finished_ = true;
  uv_timer_stop(&deadline_);
  uv_close(reinterpret_cast<uv_handle_t*>(&deadline_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&read_deadline_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigterm_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sighup_), nullptr);
  // Closing the watchers restores the default action; everything is flushed by now, so
  // a late signal must not turn our exit status into "killed by SIGTERM".
  std::signal(SIGTERM, SIG_IGN);
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGHUP, SIG_IGN);
  if (notifier_) notifier_->close();
  // The writer thread has exited: no turn can be taken any more. A step half prepared
  // is dropped (its segment is rewritten at the next start).
  if (retention_) retention_->stop();
  writer_->close();
  // The loop ends by itself once these close callbacks have run.
}

}  // namespace cairn::daemon

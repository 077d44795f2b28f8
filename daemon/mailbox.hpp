// mailbox.hpp — hands results from a worker thread to the libuv loop.
//
// Workers append under a mutex and poke one uv_async_t; libuv coalesces pokes, so the
// loop wakes once per burst and gets the whole burst as one vector. The handler runs on
// the loop thread and may be called with an empty vector (a bare wake()).
#pragma once

#include <uv.h>

#include <functional>
#include <mutex>
#include <vector>

namespace cairn::daemon {

template <class T>
class Mailbox {
 public:
  using Handler = std::function<void(std::vector<T>&)>;

  Mailbox() = default;
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;

  // Loop thread. Returns a negative libuv error on failure (the handler is never called).
  int init(uv_loop_t* loop, Handler handler) {
    handler_ = std::move(handler);
    int rc = uv_async_init(loop, &async_, &Mailbox::on_async);
    if (rc < 0) return rc;
    async_.data = this;
    ready_ = true;
    return 0;
  }

  // Any thread. Moves the items out of `items`.
  void post(std::vector<T>& items) {
    if (items.empty()) return;
    {
      std::lock_guard lk(mu_);
      if (box_.empty()) {
        box_.swap(items);
      } else {
        box_.insert(box_.end(), std::make_move_iterator(items.begin()),
                    std::make_move_iterator(items.end()));
      }
    }
    items.clear();
    uv_async_send(&async_);
  }

  void wake() { uv_async_send(&async_); }

  // Loop thread: takes whatever is posted but not yet handled.
  void take(std::vector<T>& out) {
    std::lock_guard lk(mu_);
    out.insert(out.end(), std::make_move_iterator(box_.begin()),
               std::make_move_iterator(box_.end()));
    box_.clear();
  }

  // Loop thread; the Mailbox must stay alive until the loop has run the close.
  void close() {
    if (!ready_) return;
    ready_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  }

 private:
  static void on_async(uv_async_t* h) noexcept {
    auto* self = static_cast<Mailbox*>(h->data);
    std::vector<T> items;
    {
      std::lock_guard lk(self->mu_);
      items.swap(self->box_);
    }
    self->handler_(items);
  }

  uv_async_t async_{};
  bool ready_ = false;
  Handler handler_;
  std::mutex mu_;
  std::vector<T> box_;
};

}  // namespace cairn::daemon

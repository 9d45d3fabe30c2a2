// A bounded queue of tasks run by a fixed set of threads.
#ifndef SHEAF_COMMON_WORK_QUEUE_H_
#define SHEAF_COMMON_WORK_QUEUE_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sheaf {

// Thread-safe. Tasks run in submission order per worker pick-up; a task must
// not throw.
class WorkQueue {
 public:
  WorkQueue(size_t threads, size_t capacity);
  ~WorkQueue();  // Stop()s

  // False if the queue is full or stopped; the task is then not run.
  bool TrySubmit(std::function<void()> task);
  // Runs what is queued, then joins the threads. Idempotent.
  void Stop();
  size_t depth() const;

 private:
  void Run();

  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace sheaf

#endif  // SHEAF_COMMON_WORK_QUEUE_H_

// Note [A launcher left waiting]
//
// When a host's link goes down, the ranks on the other hosts notice through their watchdog and the job aborts.
// mpirun then orders every daemon to end its ranks and waits to hear back from each. The daemon behind the cut link
// never answers, and mpirun's message to it sits unacknowledged in TCP, which retransmits for a quarter of an hour
// before it gives up; TCP keepalive does not apply while data is unacknowledged. `launch` ends such an mpirun itself
// (LaunchCommand.runJob); under a plain `mpirun` nothing of ours would.
//
// The ranks that mpirun starts on its own host are its children, so one of them can do it. At start-up, the first of
// them forks a guard: a small process in a session of its own that holds the read end of a pipe whose write end only
// the rank holds. A clean exit of the rank (exit(), with any status) writes one byte through an atexit handler and
// the guard leaves. Any other end (the watchdog's MPI_Abort and _exit, a kill by Open MPI as the job aborts, a
// crash) closes the pipe unwritten: the guard then waits `grace` seconds, and if the same mpirun (same pid, same
// start time) is still there, says so on mpirun's own stderr and SIGKILLs it. A reachable job is gone well within
// the grace (mpirun ends it in about a second); one still there is waiting for a host it cannot reach.
//
// The fork happens before MPI_Init (no MPI state, no warnings about fork from Open MPI's transports), and the guard
// makes only async-signal-safe calls: the rank is multithreaded by then (Foundation, Dispatch).

#define _GNU_SOURCE
#include "Kernels.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int guard_pipe = -1;
static char guard_message[1024];
static size_t guard_message_length;

static void disarm_guard(void) {
  if (guard_pipe < 0) return;
  char clean = 'C';
  ssize_t written;
  do written = write(guard_pipe, &clean, 1);
  while (written < 0 && errno == EINTR);
}

/// "/proc/PID" + `file` into `path` (64 bytes), without printf (async-signal-safe).
static void proc_path(char path[64], pid_t pid, const char *file) {
  char digits[24];
  int count = 0;
  for (pid_t rest = pid; rest > 0 || count == 0; rest /= 10) digits[count++] = (char)('0' + rest % 10);
  memcpy(path, "/proc/", 6);
  size_t at = 6;
  while (count > 0) path[at++] = digits[--count];
  size_t length = strlen(file);
  memcpy(path + at, file, length + 1);
}

/// Field 22 of /proc/PID/stat, the process's start time in clock ticks since boot: with the pid, it tells the
/// process apart from a later one that reuses the pid. Only async-signal-safe calls.
static bool start_time(pid_t pid, unsigned long long *ticks) {
  char path[64];
  proc_path(path, pid, "/stat");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char text[1024];
  ssize_t length = read(fd, text, sizeof text - 1);
  close(fd);
  if (length <= 0) return false;
  text[length] = 0;
  // The name (field 2) is in parentheses and may hold spaces or parentheses itself: count from the last ')'.
  char *cursor = strrchr(text, ')');
  if (cursor == NULL) return false;
  int field = 2;
  while (*cursor && field < 22) {
    if (*cursor == ' ') field++;
    cursor++;
  }
  if (field != 22) return false;
  unsigned long long value = 0;
  while (*cursor >= '0' && *cursor <= '9') value = value * 10 + (unsigned long long)(*cursor++ - '0');
  *ticks = value;
  return true;
}

static void write_all(int fd, const char *text, size_t length) {
  while (length > 0) {
    ssize_t written = write(fd, text, length);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return;
    text += written;
    length -= (size_t)written;
  }
}

_Noreturn static void run_guard(int pipe_end, pid_t launcher, unsigned long long started, double grace) {
  setsid();
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
  }
  // Keep nothing of the rank's but the pipe: above all not its stdout and stderr, whose pipes mpirun reads to
  // their end. (Descriptors 0-2 are open in a rank, so the pipe's end is above them.)
  if (syscall(SYS_close_range, 3, pipe_end - 1, 0) != 0 || syscall(SYS_close_range, pipe_end + 1, ~0U, 0) != 0) {
    for (int fd = 3; fd < 65536; fd++) {
      if (fd != pipe_end) close(fd);
    }
  }
  char byte;
  ssize_t got;
  do got = read(pipe_end, &byte, 1);
  while (got < 0 && errno == EINTR);
  if (got == 1) _exit(0);  // A clean exit: nothing to guard.
  struct timespec pause = {.tv_sec = (time_t)grace, .tv_nsec = (long)((grace - (double)(time_t)grace) * 1e9)};
  while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
  }
  unsigned long long now;
  if (!start_time(launcher, &now) || now != started) _exit(0);  // mpirun ended by itself.
  char path[64];
  proc_path(path, launcher, "/fd/2");
  int stderr_of_launcher = open(path, O_WRONLY | O_APPEND | O_NOCTTY | O_CLOEXEC);
  if (stderr_of_launcher >= 0) {
    write_all(stderr_of_launcher, guard_message, guard_message_length);
    close(stderr_of_launcher);
  }
  kill(launcher, SIGKILL);
  _exit(0);
}

bool ddp_guard_launcher(double grace, const char *message) {
  if (guard_pipe >= 0) return true;
  pid_t launcher = getppid();
  unsigned long long started;
  if (!start_time(launcher, &started)) return false;
  guard_message_length = strlen(message);
  if (guard_message_length >= sizeof guard_message) guard_message_length = sizeof guard_message - 1;
  memcpy(guard_message, message, guard_message_length);
  int ends[2];
  if (pipe2(ends, O_CLOEXEC) != 0) return false;
  pid_t child = fork();
  if (child < 0) {
    close(ends[0]);
    close(ends[1]);
    return false;
  }
  if (child == 0) {
    close(ends[1]);
    run_guard(ends[0], launcher, started, grace);
  }
  close(ends[0]);
  guard_pipe = ends[1];
  atexit(disarm_guard);
  return true;
}

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "Kernels.h"

static volatile sig_atomic_t first_stop_signal = 0;

static const int stop_signals[] = {SIGTERM, SIGINT, SIGUSR1};
enum { stop_signal_count = sizeof stop_signals / sizeof stop_signals[0] };

static void stop_signal_set(sigset_t *set) {
  sigemptyset(set);
  for (int i = 0; i < stop_signal_count; i++) sigaddset(set, stop_signals[i]);
}

// Note [Stop signals at start-up]: between the first instruction of main and the moment a command installs its own
// handling, a stop signal must neither kill the process nor be lost, also across the execve with which ddp-train
// re-executes itself to choose OpenBLAS's kernels (Note [Unknown CPU models]). execve keeps the signal mask and the
// pending signals, and resets caught signals to their default action. So while held, the main thread blocks the
// stop signals and they stay pending; other threads (OpenBLAS starts its pool when it loads, before main, with the
// signals unblocked) would take a process-directed signal by its default action, so a handler forwards what they
// get to the main thread, where it stays pending. A signal the main thread took in its handler before blocking is
// recorded and raised again (pending) before an exec. Signals that were ignored stay ignored.
static volatile sig_atomic_t held_signal = 0;
static pid_t holding_thread = 0;
static bool held_handler_installed[stop_signal_count];

static void on_held_signal(int signal_number) {
  int saved_errno = errno;
  if ((pid_t)syscall(SYS_gettid) != holding_thread) {
    // Pending on the main thread, which blocks it: delivered once the command takes the signals over.
    syscall(SYS_tgkill, getpid(), holding_thread, signal_number);
  } else if (held_signal == 0) {
    held_signal = signal_number;
  }
  errno = saved_errno;
}

void ddp_hold_stop_signals(void) {
  holding_thread = (pid_t)syscall(SYS_gettid);
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_held_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int i = 0; i < stop_signal_count; i++) {
    struct sigaction current;
    sigaction(stop_signals[i], NULL, &current);
    held_handler_installed[i] = !(current.sa_flags & SA_SIGINFO) && current.sa_handler == SIG_DFL;
    if (held_handler_installed[i]) sigaction(stop_signals[i], &action, NULL);
  }
  sigset_t stops;
  stop_signal_set(&stops);
  pthread_sigmask(SIG_BLOCK, &stops, NULL);
}

void ddp_release_stop_signals(void) {
  for (int i = 0; i < stop_signal_count; i++) {
    if (held_handler_installed[i]) signal(stop_signals[i], SIG_DFL);
    held_handler_installed[i] = false;
  }
  // Still blocked: pending, and then taken by its default action as if nothing had held it.
  if (held_signal != 0) raise(held_signal);
  held_signal = 0;
  sigset_t stops;
  stop_signal_set(&stops);
  pthread_sigmask(SIG_UNBLOCK, &stops, NULL);
}

int ddp_reexec_self(char *_Nullable const *_Nonnull argv) {
  // A signal the main thread took before it blocked them: pending again, so that it survives the exec.
  if (held_signal != 0) raise(held_signal);
  held_signal = 0;
  execv("/proc/self/exe", (char *const *)argv);
  return errno;
}

static void on_stop_signal(int signal_number) {
  if (first_stop_signal != 0) {
    // The second request: stop now, as if no handler had been installed.
    signal(signal_number, SIG_DFL);
    raise(signal_number);
    return;
  }
  first_stop_signal = signal_number;
}

void ddp_install_stop_handlers(void) {
  // A stop that came while the signals were held (Note [Stop signals at start-up]) is the first one.
  if (held_signal != 0 && first_stop_signal == 0) first_stop_signal = held_signal;
  held_signal = 0;
  for (int i = 0; i < stop_signal_count; i++) held_handler_installed[i] = false;
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  // Interrupted reads and writes (a checkpoint being written) resume instead of failing with EINTR.
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGUSR1, &action, NULL);
  // A process inherits its blocked-signal mask: one started by a program whose thread blocked these (a test
  // runner, a thread pool) would otherwise never see the stop it is asked for.
  // Pending ones (held at start-up) are delivered to the handler now.
  sigset_t stops;
  stop_signal_set(&stops);
  pthread_sigmask(SIG_UNBLOCK, &stops, NULL);
}

int ddp_stop_signal(void) { return first_stop_signal; }

#include <sys/prctl.h>
#include <unistd.h>

bool ddp_die_with_parent(void) {
  pid_t parent = getppid();
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return false;
  // The parent may have died before the call: then nobody would ever send the signal.
  if (getppid() != parent) raise(SIGKILL);
  return true;
}

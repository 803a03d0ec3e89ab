#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "Kernels.h"

static volatile sig_atomic_t first_stop_signal = 0;

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
  sigset_t stops;
  sigemptyset(&stops);
  sigaddset(&stops, SIGTERM);
  sigaddset(&stops, SIGINT);
  sigaddset(&stops, SIGUSR1);
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

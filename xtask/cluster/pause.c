/* The pod sandbox's process (what containerd's pinned sandbox image runs): holds the pod's
 * namespaces, reaps the zombies it inherits as PID 1, and exits at once on SIGTERM/SIGINT so a
 * pod stops without waiting for its grace period. Built static by `cargo xtask cluster`; no
 * registry is reachable here, so the image is made from this file. */
#include <signal.h>
#include <sys/wait.h>
#include <stddef.h>
#include <unistd.h>

static void stop(int sig) { _exit(sig == SIGTERM || sig == SIGINT ? 0 : 1); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    if (sigaction(SIGINT, &on_stop, NULL) || sigaction(SIGTERM, &on_stop, NULL) ||
        sigaction(SIGCHLD, &on_child, NULL)) {
        return 1;
    }
    for (;;) {
        pause();
    }
}

// Command helm-worker runs many `helm template` and `helm lint` invocations in one process.
//
// A helm process spends about 45 ms of its ~50 ms starting up (the package initialisers
// of the Kubernetes client libraries); validate runs two per chart and environment. This
// worker starts once and runs each invocation through helm's own command tree
// (helm.sh/helm/v4/pkg/cmd, the code the helm binary runs), one after another, with the
// invocation's stdout and stderr sent to the files it names: the output and exit code are
// those of the helm binary of the same version.
//
// Protocol, one JSON object per line: on start the worker writes
// {"protocol":1,"helm":"v4.2.4"} to its stdout; then for each request read from stdin,
// {"args":[...],"cwd":"...","stdout":"file","stderr":"file"}, it answers {"exit":N}, or
// {"refused":"why"} for an invocation it does not run (the caller then starts helm
// itself). The worker exits at the end of its input.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
	helmcmd "helm.sh/helm/v4/pkg/cmd"
	"helm.sh/helm/v4/pkg/kube"
)

const protocol = 1

type request struct {
	Args   []string `json:"args"`
	Cwd    string   `json:"cwd"`
	Stdout string   `json:"stdout"`
	Stderr string   `json:"stderr"`
}

type answer struct {
	Exit    *int   `json:"exit,omitempty"`
	Refused string `json:"refused,omitempty"`
}

func main() {
	kube.ManagedFieldsManager = "helm" // as helm's main sets it
	// Answers go to a copy of the original stdout: fd 1 is each invocation's own.
	control, err := unix.Dup(1)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helm-worker:", err)
		os.Exit(3)
	}
	answers := json.NewEncoder(os.NewFile(uintptr(control), "control"))
	if err := answers.Encode(map[string]any{"protocol": protocol, "helm": helmVersion()}); err != nil {
		os.Exit(3)
	}
	lines := bufio.NewScanner(os.Stdin)
	lines.Buffer(make([]byte, 1<<20), 16<<20)
	for lines.Scan() {
		var req request
		reply := answer{}
		if err := json.Unmarshal(lines.Bytes(), &req); err != nil {
			reply.Refused = "not a request: " + err.Error()
		} else if len(req.Args) == 0 || (req.Args[0] != "template" && req.Args[0] != "lint") {
			reply.Refused = "only `helm template` and `helm lint` run here"
		} else if code, err := run(req); err != nil {
			reply.Refused = err.Error()
		} else {
			reply.Exit = &code
		}
		if err := answers.Encode(reply); err != nil {
			os.Exit(3)
		}
	}
}

// run gives helm's command tree the invocation's working directory, stdout and stderr.
func run(req request) (int, error) {
	stdout, err := os.Create(req.Stdout)
	if err != nil {
		return 0, err
	}
	defer stdout.Close()
	stderr, err := os.Create(req.Stderr)
	if err != nil {
		return 0, err
	}
	defer stderr.Close()
	home, err := os.Getwd()
	if err != nil {
		return 0, err
	}
	if err := os.Chdir(req.Cwd); err != nil {
		return 0, err
	}
	defer os.Chdir(home)
	savedOut, savedErr, err := redirect(int(stdout.Fd()), int(stderr.Fd()))
	if err != nil {
		return 0, err
	}
	defer restore(savedOut, savedErr)
	return execute(req.Args), nil
}

// execute is helm's main, returning its exit code instead of exiting.
func execute(args []string) int {
	cmd, err := helmcmd.NewRootCmd(os.Stdout, args, helmcmd.SetupLogging)
	if err != nil {
		slog.Warn("command failed", slog.Any("error", err))
		return 1
	}
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		var cerr helmcmd.CommandError
		if errors.As(err, &cerr) {
			return cerr.ExitCode
		}
		return 1
	}
	return 0
}

func redirect(out, errOut int) (int, int, error) {
	savedOut, err := unix.Dup(1)
	if err != nil {
		return 0, 0, err
	}
	savedErr, err := unix.Dup(2)
	if err != nil {
		unix.Close(savedOut)
		return 0, 0, err
	}
	if err := unix.Dup2(out, 1); err != nil {
		restore(savedOut, savedErr)
		return 0, 0, err
	}
	if err := unix.Dup2(errOut, 2); err != nil {
		restore(savedOut, savedErr)
		return 0, 0, err
	}
	return savedOut, savedErr, nil
}

func restore(savedOut, savedErr int) {
	unix.Dup2(savedOut, 1)
	unix.Dup2(savedErr, 2)
	unix.Close(savedOut)
	unix.Close(savedErr)
}

// helmVersion is the helm module this worker was built with: it must be the pinned helm.
func helmVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "helm.sh/helm/v4" {
				return dep.Version
			}
		}
	}
	return "unknown"
}

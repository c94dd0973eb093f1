// Command pulumi-language-python is DepCon's own build of the Pulumi Python
// language host.
//
// Why it exists: the upstream host lives in its own Go module
// (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3), which
// has no release tags; the Go module proxy of this network serves none of its
// pseudo-versions (every release commit answers 403), so it cannot be built
// here. This host implements the part of the LanguageRuntime gRPC protocol
// that `pulumi preview/up/destroy` use, on top of the public packages of the
// Pulumi Go SDK module (github.com/pulumi/pulumi/sdk/v3) at the same version
// as the CLI: the Python toolchain resolution (virtualenv) and the program
// launcher script pulumi-language-python-exec both come from that module, so
// programs run exactly as under the upstream host. Methods the deployment path
// does not need (code generation, templates, packing) answer Unimplemented.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
)

// version is stamped at link time (-X main.version=...) with the Pulumi SDK
// version the host was built against; the CLI shows it in `pulumi about`.
var version = "dev"

// bailExitCode is what pulumi-language-python-exec exits with after it has
// already shown the user an actionable message; the engine must then not add
// a second, generic error.
const bailExitCode = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	// execScript is pulumi-language-python-exec, installed next to this binary.
	execScript string
	// engineAddress is the engine's gRPC address (the CLI's positional
	// argument); the program sends its log messages there.
	engineAddress string
}

func main() {
	// The CLI passes a few flags (tracing, root, ...) before the engine
	// address; they are accepted so the command line parses, but this host
	// needs none of them: everything it uses arrives in the RPC requests.
	flag.String("tracing", "", "ignored: tracing endpoint")
	flag.String("root", "", "ignored: project root, also sent in ProgramInfo")
	flag.String("virtualenv", "", "ignored: runtime options are read from ProgramInfo")
	flag.String("toolchain", "", "ignored: runtime options are read from ProgramInfo")
	flag.String("typechecker", "", "ignored: type checking is not supported")
	// -version lets the build (and its test) check the binary runs without
	// starting a server.
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(version)
		return
	}

	self, err := os.Executable()
	if err != nil {
		fatal(fmt.Errorf("locating own executable: %w", err))
	}
	if flag.NArg() < 1 {
		fatal(errors.New("missing required engine RPC address argument"))
	}
	h := &host{
		execScript:    filepath.Join(filepath.Dir(self), "pulumi-language-python-exec"),
		engineAddress: flag.Arg(0),
	}
	if _, err := os.Stat(h.execScript); err != nil {
		fatal(fmt.Errorf("launcher script missing next to the host: %w", err))
	}

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
		Options: rpcutil.OpenTracingServerInterceptorOptions(nil),
	})
	if err != nil {
		fatal(fmt.Errorf("starting gRPC server: %w", err))
	}
	// The plugin protocol: the first line on stdout is the port to dial.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
	os.Exit(1)
}

// Handshake is accepted so the engine treats this host as a modern plugin;
// all state it needs comes with each request.
func (h *host) Handshake(
	context.Context, *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// GetRequiredPlugins and GetRequiredPackages report nothing: the upstream host
// scans the virtualenv so the CLI can download missing plugins, but nothing is
// downloaded here; the plugins are installed ahead of time into PULUMI_HOME and
// the engine loads each provider when the program first registers a resource.
func (h *host) GetRequiredPlugins(
	context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *host) GetRequiredPackages(
	context.Context, *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

// resolveToolchain maps the project's runtime options (Pulumi.yaml
// `runtime.options`) onto the SDK's toolchain resolution, so `virtualenv:
// .venv` means the same here as under the upstream host.
func resolveToolchain(info *pulumirpc.ProgramInfo) (toolchain.Toolchain, error) {
	opts := toolchain.PythonOptions{
		Root:       info.GetRootDirectory(),
		ProgramDir: info.GetProgramDirectory(),
		Toolchain:  toolchain.Pip,
	}
	if o := info.GetOptions(); o != nil {
		m := o.AsMap()
		if v, ok := m["virtualenv"].(string); ok {
			opts.Virtualenv = v
		}
		if v, ok := m["toolchain"].(string); ok {
			switch v {
			case "pip", "":
				opts.Toolchain = toolchain.Pip
			case "uv":
				opts.Toolchain = toolchain.Uv
			case "poetry":
				opts.Toolchain = toolchain.Poetry
			default:
				return nil, fmt.Errorf("unsupported python toolchain %q", v)
			}
		}
	}
	return toolchain.ResolveToolchain(opts)
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	tc, err := resolveToolchain(req.GetInfo())
	if err != nil {
		return nil, err
	}
	args := []string{
		"-u", h.execScript,
		"--monitor", req.GetMonitorAddress(),
		"--engine", h.engineAddress,
		"--project", req.GetProject(),
		"--stack", req.GetStack(),
		"--pwd", req.GetPwd(),
		"--dry_run", strconv.FormatBool(req.GetDryRun()),
		"--parallel", strconv.Itoa(int(req.GetParallel())),
		"--organization", req.GetOrganization(),
		"--root_directory", req.GetInfo().GetRootDirectory(),
	}
	program := req.GetInfo().GetEntryPoint()
	if program == "" {
		program = "."
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return nil, err
	}
	env, err := configEnv(req)
	if err != nil {
		return nil, err
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Dir = req.GetInfo().GetProgramDirectory()
	// The engine relays the host's own stdout/stderr to the user.
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr

	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if exitErr.ExitCode() == bailExitCode {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{
				Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode()),
			}, nil
		}
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// configEnv passes stack configuration the way the Python SDK reads it
// (pulumi.runtime.config): one JSON object in PULUMI_CONFIG and the secret
// keys as a JSON list in PULUMI_CONFIG_SECRET_KEYS.
func configEnv(req *pulumirpc.RunRequest) ([]string, error) {
	env := os.Environ()
	cfg := req.GetConfig()
	if cfg == nil {
		cfg = map[string]string{}
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	env = append(env, "PULUMI_CONFIG="+string(cfgJSON))
	keys := req.GetConfigSecretKeys()
	if keys == nil {
		keys = []string{}
	}
	keysJSON, err := json.Marshal(keys)
	if err != nil {
		return nil, err
	}
	env = append(env, "PULUMI_CONFIG_SECRET_KEYS="+string(keysJSON))
	return env, nil
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	tc, err := resolveToolchain(req.GetInfo())
	if err != nil {
		return nil, err
	}
	info, err := tc.About(ctx)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{
		Executable: info.PythonExecutable,
		Version:    info.PythonVersion.String(),
	}, nil
}

func (h *host) GetProgramDependencies(
	ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	tc, err := resolveToolchain(req.GetInfo())
	if err != nil {
		return nil, err
	}
	pkgs, err := tc.ListPackages(ctx, req.GetTransitiveDependencies())
	if err != nil {
		return nil, err
	}
	deps := make([]*pulumirpc.DependencyInfo, 0, len(pkgs))
	for _, p := range pkgs {
		deps = append(deps, &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version})
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: deps}, nil
}

func (h *host) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using CondenseCluster.Build;
using CondenseCluster.Shared.Training;
using Xunit;
using Xunit.Abstractions;

namespace CondenseCluster.Tests.Deployment;

/// <summary>
/// The container image's build, without Docker: the Dockerfile's <c>dotnet publish</c>, run here into a temporary
/// folder, must yield both programs with a libtorch that loads and trains; and the Dockerfile's runtime stages must run
/// that output as a non-root user without the SDK.
/// </summary>
public class PublishTests(PublishedApp app, ITestOutputHelper log) : IClassFixture<PublishedApp>
{
    [Fact]
    public void TheDockerfileRunsTheSamePublishCommand()
    {
        var run = Dockerfile.Parse(app.RepositoryRoot).Stage("build").Instructions
            .Where(i => i.Keyword == "RUN").Select(i => i.Arguments).ToList();
        Assert.Contains(PublishedApp.DockerfileCommand, run);
    }

    [Fact]
    public void TheRuntimeStagesRunTheCoordinatorAsANonRootUserWithoutTheSdk()
    {
        var dockerfile = Dockerfile.Parse(app.RepositoryRoot);
        foreach (var name in new[] { "runtime-cpu", "runtime-cuda" })
        {
            var stage = dockerfile.Stage(name);
            Assert.DoesNotMatch(@"(^|/)sdk(:|$)", stage.Image);
            Assert.Equal("10001", stage.Instructions.Last(i => i.Keyword == "USER").Arguments);
            Assert.Equal("/app", stage.Instructions.Last(i => i.Keyword == "WORKDIR").Arguments);
            Assert.StartsWith("[\"/app/condense-coordinator\"]", stage.Instructions.Last(i => i.Keyword == "ENTRYPOINT").Arguments);
            Assert.DoesNotContain(stage.Instructions, i => i.Keyword == "RUN" && Regex.IsMatch(i.Arguments, @"\bdotnet (build|publish|restore)\b"));
        }
        Assert.Equal("mcr.microsoft.com/dotnet/aspnet:10.0", dockerfile.Stage("runtime-cpu").Image);

        // The stage a plain `docker build` ends in is one of the two (picked by TORCH_BACKEND), and the last entry point
        // in the file, which that stage inherits, is the coordinator.
        var final = dockerfile.Stages[^1];
        Assert.Equal("runtime-cpu", final.Image);
        Assert.Equal("[\"/app/condense-coordinator\"]", dockerfile.Stages.SelectMany(s => s.Instructions).Last(i => i.Keyword == "ENTRYPOINT").Arguments);
        Assert.DoesNotContain(final.Instructions, i => i.Keyword == "USER");
    }

    [Fact]
    public void ThePublishedFolderHoldsBothProgramsLibTorchAndTheBundledData()
    {
        string folder = app.Folder();
        foreach (var program in new[] { "condense-coordinator", "condense-worker" })
        {
            Assert.True(File.Exists(Path.Combine(folder, program)), $"{program} (apphost) is missing from {folder}");
            Assert.True(File.Exists(Path.Combine(folder, program + ".dll")), $"{program}.dll is missing from {folder}");
            Assert.True(File.Exists(Path.Combine(folder, program + ".runtimeconfig.json")), $"{program}.runtimeconfig.json is missing");
        }

        string native = Path.Combine(folder, "runtimes", "linux-x64", "native");
        foreach (var library in new[] { "libLibTorchSharp.so", "libtorch.so", "libtorch_cpu.so", "libc10.so" })
            Assert.True(File.Exists(Path.Combine(native, library)), $"{library} is not in {native}");
        // The publish-time ELF patch (build/TorchSharpElfFix.targets) reached the published copy too.
        byte[] torchSharp = File.ReadAllBytes(Path.Combine(native, "libLibTorchSharp.so"));
        Assert.Equal(ElfPatchOutcome.AlreadyWeak, ElfWeakVersionNeed.MarkWeak(torchSharp, "GLIBCXX_3.4.32"));

        foreach (var file in new[] { "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz" })
            Assert.True(File.Exists(Path.Combine(app.BundledData, file)), $"{file} is not in {app.BundledData}");
    }

    [Fact]
    public void ThePublishedProgramsStartThroughTheirApphosts()
    {
        var worker = app.RunPublished("condense-worker", ["--help"], TimeSpan.FromMinutes(1));
        Assert.True(worker.Code == 0, worker.Output);
        Assert.Contains("--seed", worker.Output);

        var coordinator = app.RunPublished("condense-coordinator", ["--help"], TimeSpan.FromMinutes(1));
        Assert.True(coordinator.Code == 0, coordinator.Output);
        Assert.Contains("serve", coordinator.Output);
    }

    [Fact]
    public void ThePublishedCoordinatorTrainsATinyModelWithTheBundledData()
    {
        string run = Path.Combine(app.Scratch, "run");
        var result = app.RunPublished("condense-coordinator",
            ["train", "--local", "--stages", "2,2", "--growth", "4,8", "--data", app.BundledData, "--stop-after", "2",
                "--recovery-steps", "0", "--out", run], TimeSpan.FromMinutes(5));
        log.WriteLine(result.Output);
        Assert.True(result.Code == 0, result.Output);
        var start = RunEvents.Lines(run, "start")[0].As<RunStarted>();
        Assert.Contains(app.BundledData, start.Description);
        Assert.Equal(93, start.StepsPerEpoch); // 6,000 images in batches of 64
        var summary = RunEvents.Lines(run, "summary")[0].As<TrainingSummary>();
        Assert.Equal(2, summary.Steps);
        Assert.NotNull(summary.StoppedEarly);
        var model = new FileInfo(Path.Combine(run, "model-trained.ccm"));
        Assert.True(model.Exists && model.Length > 0, $"no model written:\n{result.Output}");
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(run, "checkpoints")));
    }
}

/// <summary>One <c>dotnet publish</c> per test class, exactly as the Dockerfile's build stage runs it, into a temporary folder.</summary>
public sealed class PublishedApp : IDisposable
{
    /// <summary>The part the test and the Dockerfile share; only the output folder and the backend differ.</summary>
    const string PublishArguments = "publish Coordinator -c Release";
    public const string DockerfileCommand = "dotnet " + PublishArguments + " -o /out -p:TorchBackend=${TORCH_BACKEND}";
    static readonly TimeSpan PublishTimeout = TimeSpan.FromMinutes(10);

    public string RepositoryRoot { get; } = FindRepositoryRoot();
    readonly string root = Directory.CreateTempSubdirectory("cc-publish-").FullName;
    readonly Lazy<(int Code, string Output, TimeSpan Took)> publish;

    public PublishedApp() => publish = new(() =>
    {
        var clock = Stopwatch.StartNew();
        var (code, output) = Run("dotnet", [.. PublishArguments.Split(' '), "-o", PublishFolder, "-p:TorchBackend=cpu"], RepositoryRoot, PublishTimeout,
            build: true);
        return (code, output, clock.Elapsed);
    });

    string PublishFolder => Path.Combine(root, "publish");
    /// <summary>A place for the runs' outputs, deleted with the published folder.</summary>
    public string Scratch => Directory.CreateDirectory(Path.Combine(root, "scratch")).FullName;
    public string BundledData => Path.Combine(Folder(), "Data", "Bundled", "fashion-mnist-subset");

    /// <summary>The published folder; fails the calling test, with the publish's output, where the publish failed.</summary>
    public string Folder()
    {
        var (code, output, took) = publish.Value;
        Assert.True(code == 0, $"dotnet {PublishArguments} -o {PublishFolder} -p:TorchBackend=cpu exited {code} after {took.TotalSeconds:0} s:\n{output}");
        return PublishFolder;
    }

    /// <summary>Runs a published program through its apphost, as the image's entry points do.</summary>
    public (int Code, string Output) RunPublished(string program, IEnumerable<string> args, TimeSpan timeout) =>
        Run(Path.Combine(Folder(), program), args, Scratch, timeout, build: false);

    static (int Code, string Output) Run(string program, IEnumerable<string> args, string workingDirectory, TimeSpan timeout, bool build)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDirectory };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        if (build) ChildProcess.ForChildBuild(start);
        var output = new StringBuilder();
        // Not disposed: a grandchild that keeps a pipe open may signal after this method has given up waiting.
        var streamsClosed = new CountdownEvent(2);
        using var process = new Process { StartInfo = start };
        DataReceivedEventHandler gather = (_, line) =>
        {
            if (line.Data is null) streamsClosed.Signal();
            else lock (output) output.AppendLine(line.Data);
        };
        process.OutputDataReceived += gather;
        process.ErrorDataReceived += gather;
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            streamsClosed.Wait(TimeSpan.FromSeconds(30));
            lock (output) return (-1, $"{program} did not exit within {timeout.TotalMinutes:0} min and was killed:\n{output}");
        }
        // A timed WaitForExit returns at the exit, before the last lines are read: wait for both streams' end (bounded,
        // as a grandchild that inherited the pipes could hold them open).
        streamsClosed.Wait(TimeSpan.FromSeconds(30));
        lock (output) return (process.ExitCode, output.ToString());
    }

    static string FindRepositoryRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
            if (File.Exists(Path.Combine(folder.FullName, "CondenseCluster.sln"))) return folder.FullName;
        throw new InvalidOperationException($"no CondenseCluster.sln above {AppContext.BaseDirectory}");
    }

    public void Dispose()
    {
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
    }
}

/// <summary>Just enough of a Dockerfile reader for the checks above: instructions (continuations joined, comments
/// dropped) grouped into stages, with the global ARG defaults substituted into each FROM.</summary>
sealed record Dockerfile(IReadOnlyList<Dockerfile.BuildStage> Stages)
{
    public sealed record Instruction(string Keyword, string Arguments);
    public sealed record BuildStage(string Image, string? Name, List<Instruction> Instructions);

    public BuildStage Stage(string name) =>
        Stages.SingleOrDefault(s => s.Name == name) ?? throw new Xunit.Sdk.XunitException($"the Dockerfile has no stage '{name}'");

    public static Dockerfile Parse(string repositoryRoot)
    {
        var instructions = new List<Instruction>();
        var current = new StringBuilder();
        foreach (var raw in File.ReadLines(Path.Combine(repositoryRoot, "Dockerfile")))
        {
            string line = raw.Trim();
            if (line.StartsWith('#') || (line.Length == 0 && current.Length == 0)) continue;
            bool continues = line.EndsWith('\\');
            current.Append(continues ? line[..^1] : line).Append(' ');
            if (continues) continue;
            string text = Regex.Replace(current.ToString().Trim(), @"\s+", " ");
            current.Clear();
            if (text.Length == 0) continue;
            int space = text.IndexOf(' ');
            instructions.Add(space < 0 ? new(text.ToUpperInvariant(), "") : new(text[..space].ToUpperInvariant(), text[(space + 1)..]));
        }

        var globalArgs = new Dictionary<string, string>();
        var stages = new List<BuildStage>();
        foreach (var instruction in instructions)
        {
            if (instruction.Keyword == "FROM")
            {
                var from = Regex.Match(instruction.Arguments, @"^(?:--platform=\S+ )?(\S+)(?: AS (\S+))?$", RegexOptions.IgnoreCase);
                Assert.True(from.Success, $"unexpected FROM {instruction.Arguments}");
                string image = Regex.Replace(from.Groups[1].Value, @"\$\{(\w+)\}|\$(\w+)", m =>
                    globalArgs.GetValueOrDefault(m.Groups[1].Success ? m.Groups[1].Value : m.Groups[2].Value, ""));
                stages.Add(new(image, from.Groups[2].Success ? from.Groups[2].Value : null, []));
            }
            else if (stages.Count == 0)
            {
                if (instruction.Keyword != "ARG") continue;
                var arg = Regex.Match(instruction.Arguments, @"^(\w+)(?:=(.*))?$");
                if (arg.Success) globalArgs[arg.Groups[1].Value] = arg.Groups[2].Value;
            }
            else
                stages[^1].Instructions.Add(instruction);
        }
        return new(stages);
    }
}

using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Training;
using Xunit;
using Xunit.Abstractions;

namespace CondenseCluster.Tests.Cluster;

/// <summary>
/// Fault injection on real clusters: a coordinator and 3 external worker processes on loopback, a tiny model on the
/// bundled Fashion-MNIST subset, a fault planted at a chosen step. Each scenario asserts that training finishes, that
/// the final weights are those of a fault-free run (one process, same micro-batches) to float summation order, that
/// the masks are identical, that every step is counted once, and prints how long recovery took.
/// </summary>
[Collection(ClusterProcesses.Name)]
public partial class FaultInjectionTests(ITestOutputHelper log, FaultInjectionTests.FaultFreeRun reference) : TempFolderTest, IClassFixture<FaultInjectionTests.FaultFreeRun>
{
    // 6,000 samples / 48 = 125 steps an epoch, M = 3 micro-batches of 16; with C = 4 masks move before step 21. A
    // weight average (--ema) is part of every replica's state and checksum, so each recovery and join must keep it too.
    const int LastStep = 24;
    static readonly string[] Job = ["--stages", "2,2", "--growth", "4,8", "--data", BundledData.FashionMnistSubset, "--seed", "7",
        "--batch-size", "48", "--micro-batches", "3", "--lr", "0.01", "--stop-after", $"{LastStep}", "--recovery-steps", "0", "--ema", "0.9"];

    /// <summary>The job without faults, in one process with the same micro-batches: trained once for all scenarios.</summary>
    public sealed class FaultFreeRun : TempFolderTest
    {
        readonly Lazy<string> model;

        public FaultFreeRun() => model = new(() =>
        {
            string folder = Path.Combine(Folder, "run");
            var (code, output) = CoordinatorProgram.Run(["train", "--local", "--threads", "1", .. Job, "--out", folder]);
            Assert.True(code == 0, output);
            return folder;
        });

        /// <summary>The run's folder, with model-trained.ccm and model-ema-trained.ccm.</summary>
        public string Run => model.Value;
    }

    [Fact]
    public void AWorkerKilledInComputeIsLeftOutAndTheStepRedone() => OneFault("worker-2", "kill@compute:5");

    [Fact]
    public void AWorkerKilledInTheAllReduceIsLeftOutAndTheStepRedone() => OneFault("worker-3", "kill@allreduce:7");

    [Fact]
    public void AWorkerKilledDuringAMaskBroadcastIsLeftOutAndTheSameMasksInstalled()
    {
        var run = OneFault("worker-2", "kill@masks:1");
        Assert.Contains(RunEvents.Of<MasksInForce>(run.Folder), m => m.Version == 1 && m.Workers == 2);
    }

    [Fact]
    public void AWorkerKilledWhileACheckpointIsFetchedFromItIsLeftOutAndTheCheckpointRedone()
    {
        var run = OneFault("worker-1", "kill@checkpoint:8", "--checkpoint-every", "8");
        Assert.Contains(RunEvents.Of<CheckpointWritten>(run.Folder), c => c.Step == 8 && Path.GetFileName(c.Path) == "checkpoint-000000008.ccc");
    }

    [Fact]
    public void AStoppedWorkerIsExcludedWithinTheFailureDetectorsBound()
    {
        var run = OneFault("worker-2", "stop@compute:5");
        // Found by the failure detector (the reason is the cluster's own words), not by a broken stream.
        Assert.Contains(RunEvents.Of<WorkerRemoved>(run.Folder), w => w.Worker == "worker-2" && w.Gone && w.Reason.StartsWith("is unreachable"));
        Assert.True(run.Resumed.TotalSeconds <= 15, $"a stopped worker took {run.Resumed.TotalSeconds:F1} s to be excluded");
    }

    [Fact]
    public void TheEmbeddedClustersWorkersRefuseADuplicateNameAndExitWithTheirKilledCoordinator()
    {
        using var cluster = new Cluster(this, Folder);
        // Long enough (1,250 steps, 80 ms each on a quiet machine) to be still running when the coordinator is killed.
        cluster.StartCoordinator("--local-workers", "2", "--workers", "2", "--epochs", "10", "--stop-after", "1250");
        cluster.WaitForSteps(2);
        // A worker under a name the job has already (as a worker left over from another job would be) is refused and exits.
        cluster.StartWorker("worker-1");
        Assert.Equal(1, cluster.WorkerExit("worker-1"));
        var local = cluster.LocalWorkerProcesses();
        Assert.Equal(2, local.Length);

        // Killed with SIGKILL, the coordinator cannot stop its workers: they see their input close and leave, none is left behind.
        cluster.KillCoordinator();
        var clock = Stopwatch.StartNew();
        while (cluster.LocalWorkerProcesses().Length > 0)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"workers {string.Join(", ", cluster.LocalWorkerProcesses())} still run after the coordinator's kill");
            Thread.Sleep(100);
        }
        log.WriteLine($"the embedded cluster's workers exited {clock.Elapsed.TotalSeconds:F1} s after the coordinator's kill");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"{clock.Elapsed.TotalSeconds:F1} s");
    }

    [Fact]
    public void TwoWorkersLostInARowLeaveTheLastToFinish()
    {
        using var cluster = new Cluster(this, Folder);
        cluster.StartCoordinator();
        cluster.StartWorker("worker-1");
        cluster.StartWorker("worker-2", "--fault", "kill@compute:5");
        cluster.StartWorker("worker-3", "--fault", "kill@allreduce:9");
        var run = cluster.Finish();
        var continued = RunEvents.Of<TrainingContinues>(run.Folder);
        Assert.Contains(continued, c => c is { Change: RingChange.Recovery, Step: 5, Workers.Count: 2 });
        Assert.Contains(continued, c => c is { Change: RingChange.Recovery, Step: 9 } && c.Workers.SequenceEqual(["worker-1"]));
        AssertMatchesFaultFreeRun(run, survivors: 1);
    }

    [Fact]
    public void AKilledWorkerThatRestartsRejoinsWithAPeersStateAtAStepBoundary()
    {
        using var cluster = new Cluster(this, Folder);
        cluster.StartCoordinator();
        // A straggler at step 20 holds the job (alive, so not excluded) long enough for the restarted process, which
        // takes seconds to start, to register before the job ends.
        cluster.StartWorker("worker-1", "--fault", "slow@compute:20");
        cluster.StartWorker("worker-2");
        cluster.StartWorker("worker-3", "--fault", "kill@compute:3");
        cluster.WaitFor<TrainingContinues>(c => c is { Step: 3, Workers.Count: 2 });
        cluster.StartWorker("worker-3");
        var run = cluster.Finish();
        Assert.Contains(RunEvents.Of<WorkerArrived>(run.Folder), w => w is { Worker: "worker-3", Expected: null }); // a joiner, not a founder
        // Admitted at a step boundary behind rank 0 (worker-1), whose state it copies.
        Assert.Contains(RunEvents.Of<TrainingContinues>(run.Folder),
            c => c.Change == RingChange.Admission && c.Workers.SequenceEqual(["worker-1", "worker-2", "worker-3"]));
        AssertMatchesFaultFreeRun(run, survivors: 3);
    }

    [Theory]
    [InlineData(4)]
    [InlineData(0)] // killed before the first checkpoint (the epoch's end): the run folder holds only job.json
    public void ARestartedCoordinatorContinuesFromTheWorkersMemory(int checkpointEvery)
    {
        using var cluster = new Cluster(this, Folder);
        int port = FreePort();
        string[] coordinator = ["--port", $"{port}", "--checkpoint-every", $"{checkpointEvery}"];
        cluster.StartCoordinator(coordinator);
        for (int i = 1; i <= 3; i++) cluster.StartWorker($"worker-{i}");
        cluster.WaitFor<MasksInForce>(m => m.Version == 1); // step 21
        cluster.KillCoordinator();
        cluster.StartCoordinator([.. coordinator, "--resume", Path.Combine(Folder, "run")]);
        var run = cluster.Finish(countSteps: false); // the steps run while no coordinator listened are not in its log
        var resumed = RunEvents.Single<ContinuingFromWorkers>(run.Folder);
        Assert.Equal(checkpointEvery > 0 ? 20 : null, resumed.CheckpointStep);
        Assert.True(resumed.Step >= 21, $"{resumed}");
        AssertMatchesFaultFreeRun(run, survivors: 3);
    }

    [Fact]
    public void ANewRunOfTheSameConfigurationDropsWhatItsWorkersTrainedForAnotherRun()
    {
        // The workers of a run whose coordinator was killed wait for it at its address, holding that run's replicas ...
        using var orphaned = new Cluster(this, Folder);
        int port = FreePort();
        orphaned.StartCoordinator("--port", $"{port}");
        for (int i = 1; i <= 3; i++) orphaned.StartWorker($"worker-{i}");
        orphaned.WaitForSteps(5);
        orphaned.KillCoordinator();

        // ... where a new run of the same configuration starts (no --resume): it takes the workers, not their training.
        using var cluster = new Cluster(this, Path.Combine(Folder, "new"));
        cluster.StartCoordinator("--port", $"{port}");
        var run = cluster.Finish(); // every step of the new run once, from its first
        Assert.Empty(RunEvents.Of<ContinuingFromWorkers>(run.Folder));
        var arrived = RunEvents.Of<WorkerArrived>(run.Folder);
        Assert.Equal(3, arrived.Length);
        Assert.All(arrived, w => Assert.True(w is { HeldStep: null, OtherRunStep: >= 5 }, $"{w}"));
        AssertMatchesFaultFreeRun(run, survivors: 3);
    }

    [Fact]
    public void ATruncatedLatestCheckpointIsPassedOverForThePreviousOne()
    {
        using (var first = new Cluster(this, Folder))
        {
            first.StartCoordinator(["--checkpoint-every", "4", "--stop-after", "12"]);
            for (int i = 1; i <= 3; i++) first.StartWorker($"worker-{i}");
            first.Finish(countSteps: false);
        }
        string latest = Path.Combine(Folder, "run", "checkpoints", "checkpoint-000000012.ccc");
        using (var file = new FileStream(latest, FileMode.Open)) file.SetLength(file.Length / 2);

        using var cluster = new Cluster(this, Folder);
        cluster.StartCoordinator(["--checkpoint-every", "4", "--resume", Path.Combine(Folder, "run")]);
        for (int i = 1; i <= 3; i++) cluster.StartWorker($"worker-{i}");
        var run = cluster.Finish(countSteps: false);
        Assert.Equal(latest, RunEvents.Single<CheckpointSkipped>(run.Folder).Path);
        Assert.Equal(8, RunEvents.Single<StartingStateLoading>(run.Folder).Step);
        AssertMatchesFaultFreeRun(run, survivors: 3);
    }

    [Fact]
    public void AWorkerWhoseCopyOfTheDataIsCorruptIsExcludedAndTheOthersFinish()
    {
        string corrupt = Path.Combine(Folder, "corrupt-data");
        Directory.CreateDirectory(corrupt);
        foreach (var file in Directory.GetFiles(BundledData.FashionMnistSubset)) File.Copy(file, Path.Combine(corrupt, Path.GetFileName(file)));
        string images = Directory.GetFiles(corrupt).First(f => f.Contains("train-images"));
        using (var file = new FileStream(images, FileMode.Open)) file.SetLength(file.Length / 3);

        using var cluster = new Cluster(this, Folder);
        cluster.StartCoordinator();
        cluster.StartWorker("worker-1");
        cluster.StartWorker("worker-2", "--data", corrupt);
        cluster.StartWorker("worker-3");
        var run = cluster.Finish();
        Assert.Contains(RunEvents.Of<WorkerRemoved>(run.Folder), w => w.Worker == "worker-2" && !w.Gone && w.Reason.Contains("train-images"));
        cluster.WaitFor("[worker-2] excluded from the job"); // the worker's own line may come after the coordinator's exit

        // Left out before its first step, it leaves the run of two workers, bit for bit. (Two workers summing three
        // micro-batches differ from one process by 2.3e-3 relative after 24 steps, float order amplified; the single
        // process is the reference of the scenarios that change membership mid-run.)
        string faultFree = Path.Combine(Folder, "fault-free");
        var (code, output) = CoordinatorProgram.Run(["train", .. Job, "--local-workers", "2", "--port", "0", .. ClusterProcesses.FreeControlPorts, "--checksum-every", "1",
            "--bucket-mb", "0.004", "--out", faultFree]);
        Assert.True(code == 0, output);
        var expected = RunEvents.Single<ReplicasAgree>(faultFree);
        Assert.Equal((2, LastStep), (expected.Workers, expected.Step));
        Assert.Equal(expected.Checksum, RunEvents.Single<ReplicasAgree>(run.Folder).Checksum);
    }

    [Fact]
    public void ASigtermedCoordinatorCheckpointsTheStepInFlightExitsAndTheResumedJobMatchesTheFaultFreeRun()
    {
        using (var stopped = new Cluster(this, Folder))
        {
            stopped.StartCoordinator();
            for (int i = 1; i <= 3; i++) stopped.StartWorker($"worker-{i}");
            stopped.WaitForSteps(5);
            var clock = Stopwatch.StartNew();
            stopped.SignalCoordinator("TERM");
            stopped.Finish(countSteps: false);
            log.WriteLine($"SIGTERM to the coordinator's exit: {clock.Elapsed.TotalSeconds:F2} s");
            AssertStoppedWithACheckpoint("SIGTERM");
        }
        using var resumed = new Cluster(this, Folder);
        resumed.StartCoordinator("--resume", Path.Combine(Folder, "run"));
        for (int i = 1; i <= 3; i++) resumed.StartWorker($"worker-{i}");
        var run = resumed.Finish(); // the two runs' steps together: each once
        AssertMatchesFaultFreeRun(run, survivors: 3);
    }

    [Fact]
    public void ASecondSigtermStopsTheJobAtOnceWithoutTheStopsCheckpoint()
    {
        using var cluster = new Cluster(this, Folder);
        cluster.StartCoordinator();
        // A 10 s straggler in step 6 holds the graceful stop back long enough for the second signal to come while it
        // waits (signals sent a moment apart may arrive as one).
        cluster.StartWorker("worker-1", "--fault", "slow@compute:6");
        cluster.StartWorker("worker-2");
        cluster.StartWorker("worker-3");
        cluster.WaitForSteps(5);
        cluster.SignalCoordinator("TERM");
        cluster.WaitFor<StopRequested>(r => r.By == "SIGTERM");
        cluster.SignalCoordinator("TERM");
        Assert.Equal(130, cluster.CoordinatorExit());
        string folder = Path.Combine(Folder, "run");
        var stopped = RunEvents.Single<JobStopped>(folder);
        Assert.Equal("SIGTERM", stopped.By);
        Assert.Null(stopped.Seconds); // at once
        Assert.Empty(RunEvents.Of<CheckpointWritten>(folder));
        Assert.StartsWith("no checkpoint had been written yet", stopped.Resume);
    }

    [Fact]
    public void ASigtermedWorkerAsksForAGracefulStopAndExitsWithTheJob()
    {
        using var cluster = new Cluster(this, Folder);
        cluster.StartCoordinator();
        for (int i = 1; i <= 3; i++) cluster.StartWorker($"worker-{i}");
        TerminateMidRun(cluster, "worker-2");
        cluster.Finish(countSteps: false);
        AssertStoppedWithACheckpoint("SIGTERM of worker-2");
    }

    [Fact]
    public void ASigtermedWorkerThatLeavesExitsAtOnceAndTheJobFinishesWithout()
    {
        using var cluster = new Cluster(this, Folder);
        cluster.StartCoordinator();
        cluster.StartWorker("worker-1");
        cluster.StartWorker("worker-2", "--on-sigterm", "leave");
        cluster.StartWorker("worker-3");
        TerminateMidRun(cluster, "worker-2");
        var run = cluster.Finish();
        Assert.Contains(RunEvents.Of<WorkerRemoved>(run.Folder), w => w.Worker == "worker-2");
        AssertMatchesFaultFreeRun(run, survivors: 2);
    }

    /// <summary>SIGTERM to <paramref name="worker"/> after a few steps: it must exit cleanly (printed: how soon).</summary>
    void TerminateMidRun(Cluster cluster, string worker)
    {
        cluster.WaitForSteps(5);
        var clock = Stopwatch.StartNew();
        cluster.SignalWorker(worker, "TERM");
        Assert.Equal(0, cluster.WorkerExit(worker));
        log.WriteLine($"SIGTERM to {worker}'s exit: {clock.Elapsed.TotalSeconds:F2} s");
    }

    /// <summary>The run stopped gracefully: its last checkpoint is of the step it stopped after, written after the request.</summary>
    void AssertStoppedWithACheckpoint(string by)
    {
        string folder = Path.Combine(Folder, "run");
        var requested = RunEvents.Single<StopRequested>(folder);
        var stopped = RunEvents.Single<JobStopped>(folder);
        Assert.Equal(by, stopped.By);
        Assert.True(stopped.Steps > requested.Steps && stopped.Steps < LastStep, $"{requested}, {stopped}"); // the step in flight completed
        Assert.Equal(stopped.Steps, RunEvents.Of<CheckpointWritten>(folder).Last().Step);
        Assert.Equal(stopped.Steps, CheckpointStore.Resolve(folder, _ => { })!.Header.Step);
        Assert.Contains($"--resume {folder} ", stopped.Resume);
        log.WriteLine($"{requested.Text()}\n{stopped.Text()}");
    }

    /// <summary>3 workers, one of them with <paramref name="fault"/>; the job must finish with the other two.</summary>
    Run OneFault(string faulty, string fault, params string[] coordinatorArgs)
    {
        using var cluster = new Cluster(this, Folder);
        cluster.StartCoordinator(coordinatorArgs);
        for (int i = 1; i <= 3; i++)
        {
            string name = $"worker-{i}";
            if (name == faulty) cluster.StartWorker(name, "--fault", fault);
            else cluster.StartWorker(name);
        }
        var run = cluster.Finish();
        Assert.Contains(RunEvents.Of<WorkerRemoved>(run.Folder), w => w.Worker == faulty && w.Gone);
        AssertMatchesFaultFreeRun(run, survivors: 2);
        // A killed process closes its ring connections: its neighbours see that at once, whatever the job was doing
        // (measured 0.11-0.18 s on 2 cores).
        if (fault.StartsWith("kill")) Assert.True(run.Resumed < TimeSpan.FromSeconds(1), $"training resumed {run.Resumed.TotalSeconds:F2} s after the kill");
        return run;
    }

    void AssertMatchesFaultFreeRun(Run run, int survivors)
    {
        Assert.Contains(RunEvents.Of<ReplicasAgree>(run.Folder), r => r.Workers == survivors && r.Step == LastStep);
        AssertSameModels(reference.Run, run: run.Folder);
    }

    /// <summary>
    /// The final weights (and weight average) and masks of the run in <paramref name="run"/> (the test's run/ folder by
    /// default) are those of the fault-free run in <paramref name="faultFree"/>, the weights to <paramref name="tolerance"/>
    /// of each parameter's largest value.
    /// </summary>
    void AssertSameModels(string faultFree, double tolerance = 5e-3, string? run = null)
    {
        foreach (var file in new[] { "model-trained.ccm", "model-ema-trained.ccm" })
        {
            var (worst, faultFreeMasks, recoveredMasks) = SavedModels.Compare(Path.Combine(faultFree, file), Path.Combine(run ?? Path.Combine(Folder, "run"), file));
            Assert.Equal(faultFreeMasks, recoveredMasks);
            log.WriteLine($"{file}: max relative weight difference from the fault-free run: {worst:E2}");
            // Float summation order (the ring's sum of N partial sums vs one process's), amplified over 24 steps; a cluster of
            // one worker equals the single process bit for bit. Measured 2e-7 to 9e-5 in these scenarios with NCHW group
            // convolutions, and 1.7e-3 (in the first layer's BN bias, whose values are near zero) since they run
            // channels-last on CPU, whose weight gradient rounds at about 1e-6 relative instead of 1e-7.
            Assert.True(worst <= tolerance, $"{file}: weights differ from the fault-free run by {worst:E2} relative");
        }
    }

    ITestOutputHelper Log => log;

    /// <summary><paramref name="job"/> without the options that <paramref name="overrides"/> gives again.</summary>
    static IEnumerable<string> Without(string[] job, string[] overrides)
    {
        for (int i = 0; i < job.Length; i += 2)
            if (!overrides.Contains(job[i])) { yield return job[i]; yield return job[i + 1]; }
    }

    static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    /// <summary>Where a finished run wrote (its metrics.jsonl), and how long its recovery took after the planted fault (if any).</summary>
    sealed record Run(string Folder, TimeSpan Detected, TimeSpan Resumed);

    /// <summary>
    /// A coordinator on a free port and worker processes that join it, with their output gathered in one place; with a
    /// <paramref name="network"/>, the coordinator on its host address and each worker in its own namespace.
    /// </summary>
    sealed class Cluster(FaultInjectionTests test, string folder, WorkerNetwork? network = null) : IDisposable
    {
        readonly ITestOutputHelper log = test.Log;
        static readonly TimeSpan Limit = TimeSpan.FromSeconds(180);
        readonly StringBuilder output = new();
        readonly List<(string Name, Process Process)> workers = [];
        Process? coordinator;
        string seed = "";

        string Output { get { lock (output) return output.ToString(); } }
        string RunFolder => Path.Combine(folder, "run");

        public void StartCoordinator(params string[] args)
        {
            // The run folder may hold the announcements of coordinators before this one (a resumed or restarted job).
            CoordinatorWaiting[] Announced() => File.Exists(Path.Combine(RunFolder, "metrics.jsonl")) ? RunEvents.Of<CoordinatorWaiting>(RunFolder) : [];
            int before = Announced().Length;
            coordinator = Start("condense-coordinator.dll",
                ["train", .. Without(Job, args), .. Unless(args, "--local-workers", "0"), .. Unless(args, "--workers", "3"), "--checksum-every", "1",
                    "--bucket-mb", "0.004", .. Unless(args, "--port", "0"), .. ClusterProcesses.FreeControlPorts, "--out", RunFolder,
                    .. network is null ? [] : new[] { "--host", network.HostAddress }, .. args]);
            Eventually(() => Announced().Length > before, "the coordinator to wait for workers");
            seed = Announced()[^1].Seed;
        }

        /// <summary>The option <paramref name="name"/> with <paramref name="value"/>, unless <paramref name="args"/> give it.</summary>
        static string[] Unless(string[] args, string name, string value) => args.Contains(name) ? [] : [name, value];

        /// <summary>The processes of the embedded cluster's workers (started by the coordinator, not by this test) that joined the coordinator.</summary>
        public int[] LocalWorkerProcesses() =>
            [.. Directory.GetDirectories("/proc").Select(Path.GetFileName).Where(p => p!.All(char.IsDigit)).Select(p => int.Parse(p!)).Where(pid =>
            {
                try
                {
                    string command = File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ');
                    return command.Contains("condense-worker.dll") && command.Contains("--exit-with-parent") && command.Contains($"{seed} ");
                }
                catch (IOException) { return false; } // ended meanwhile
                catch (UnauthorizedAccessException) { return false; }
            })];

        public void StartWorker(string name, params string[] args) =>
            workers.Add((name, Start("condense-worker.dll",
                ["--seed", seed, "--name", name, "--threads", "1", .. network is null ? [] : new[] { "--host", network.Address(name) }, .. args],
                network?.Launcher(name))));

        public void SignalCoordinator(string signal) => BackgroundProgram.Signal(coordinator!, signal);

        public void SignalWorker(string name, string signal) => BackgroundProgram.Signal(Worker(name), signal);

        /// <summary>The exit code of the worker <paramref name="name"/>, once it exits (within the cluster's time limit).</summary>
        public int WorkerExit(string name) => ExitCode(Worker(name), name);

        /// <summary>The coordinator's exit code, once it exits (within the cluster's time limit).</summary>
        public int CoordinatorExit() => ExitCode(coordinator!, "the coordinator");

        int ExitCode(Process process, string what)
        {
            Assert.True(process.WaitForExit(Limit), $"{what} did not exit:\n{Output}");
            return process.ExitCode;
        }

        Process Worker(string name) => workers.Last(w => w.Name == name).Process;

        /// <summary>The members of every ring the job has formed so far, in order: the first (of each coordinator), recoveries, admissions.</summary>
        public IReadOnlyList<string>[] Rings() => !Logged ? [] :
            [.. RunEvents.Lines(RunFolder, "event").Select(e => e.GetProperty("event").GetString() switch
            {
                nameof(ClusterFormed) => e.As<ClusterFormed>().Ranks,
                nameof(TrainingContinues) => e.As<TrainingContinues>().Workers,
                _ => null,
            }).OfType<IReadOnlyList<string>>()];

        /// <summary>Waits until the run has logged <paramref name="count"/> events of record <typeparamref name="T"/> in all; false if the job ended first.</summary>
        public bool WaitForEventsOrEnd<T>(int count) where T : TrainingEvent => UnlessEnded(() => Count<T>() >= count, $"{count} {typeof(T).Name} events");

        /// <summary>Waits until the run's metrics.jsonl holds step <paramref name="step"/> − 1; false if the job ended first.</summary>
        public bool WaitForStepOrEnd(long step) => UnlessEnded(() => NewestStep() >= step - 1, $"step {step}");

        /// <summary>How many events of record <typeparamref name="T"/> the run has logged so far.</summary>
        public int Count<T>() where T : TrainingEvent => Logged ? RunEvents.Of<T>(RunFolder).Length : 0;

        bool Logged => File.Exists(Path.Combine(RunFolder, "metrics.jsonl"));

        long NewestStep() => Logged ? RunEvents.Lines(RunFolder, "step").Select(l => l.GetProperty("step").GetInt64()).DefaultIfEmpty(-1).Max() : -1;

        /// <summary>Waits for <paramref name="condition"/>; false if the coordinator exited first (the job ended).</summary>
        bool UnlessEnded(Func<bool> condition, string what)
        {
            bool ended = false;
            Eventually(() => condition() || (ended = coordinator!.HasExited), what);
            return !ended;
        }

        /// <summary>Waits until the run's metrics.jsonl holds <paramref name="count"/> steps.</summary>
        public void WaitForSteps(int count) => Eventually(() => File.Exists(Path.Combine(RunFolder, "metrics.jsonl")) && RunEvents.Lines(RunFolder, "step").Length >= count,
            $"{count} steps");

        /// <summary>Waits until the output holds <paramref name="text"/>: a worker's own line, which no metrics.jsonl records.</summary>
        public void WaitFor(string text) => Eventually(() => Output.Contains(text), $"'{text}'");

        /// <summary>Waits until the run's metrics.jsonl holds an event of record <typeparamref name="T"/> that <paramref name="match"/>es.</summary>
        public void WaitFor<T>(Func<T, bool> match) where T : TrainingEvent =>
            Eventually(() => RunEvents.Of<T>(RunFolder).Any(match), $"a {typeof(T).Name} event");

        void Eventually(Func<bool> condition, string what)
        {
            var clock = Stopwatch.StartNew();
            while (!condition())
            {
                Assert.True(clock.Elapsed < Limit, $"waited in vain for {what}:\n{Output}");
                Thread.Sleep(100);
            }
        }

        public void KillCoordinator()
        {
            coordinator!.Kill();
            coordinator.WaitForExit();
        }

        /// <summary>
        /// Waits for the job to end and checks it completed, with every step logged once (<paramref name="countSteps"/>;
        /// not where the log spans two coordinators).
        /// </summary>
        public Run Finish(bool countSteps = true)
        {
            Assert.True(coordinator!.WaitForExit(Limit), $"the job did not end within {Limit.TotalSeconds:0} s:\n{Output}");
            coordinator.WaitForExit();
            string text = Output;
            log.WriteLine(text);
            Assert.True(coordinator.ExitCode == 0, text);
            // Every step once: none counted twice, none skipped.
            var steps = RunEvents.Lines(RunFolder, "step").Select(l => l.GetProperty("step").GetInt64());
            if (countSteps) Assert.Equal(Enumerable.Range(0, LastStep).Select(s => (long)s), steps.Order());
            return Timed(text);
        }

        /// <summary>From the planted fault's time (printed by the worker) to the loss detected and training resumed (the coordinator's events).</summary>
        Run Timed(string text)
        {
            var fault = Regex.Match(text, @"fault injected: .* \(([^)]+)\)");
            if (!fault.Success) return new(RunFolder, TimeSpan.Zero, TimeSpan.Zero);
            var at = DateTimeOffset.Parse(fault.Groups[1].Value);
            DateTimeOffset First(string record) => RunEvents.Events(RunFolder, record).Select(e => e.Time()).First(t => t >= at.AddSeconds(-1));
            var run = new Run(RunFolder, First(nameof(RecoveryStarted)) - at, First(nameof(TrainingContinues)) - at);
            log.WriteLine($"recovery: detected {run.Detected.TotalSeconds:F2} s after the fault, training resumed after {run.Resumed.TotalSeconds:F2} s");
            return run;
        }

        Process Start(string program, IEnumerable<string> args, IReadOnlyList<string>? launcher = null) =>
            BackgroundProgram.Start(program, args, output, _ => { }, launcher: launcher);

        public void Dispose()
        {
            foreach (var process in workers.Select(w => w.Process).Append(coordinator).OfType<Process>())
                BackgroundProgram.End(process, TimeSpan.FromSeconds(10)); // killed: e.g. a stopped worker
        }
    }
}

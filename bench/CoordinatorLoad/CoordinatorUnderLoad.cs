using System.Collections.Concurrent;
using System.Diagnostics;
using System.Reflection;
using Akka.Actor;
using CondenseCluster.Coordinator.Cluster;
using CondenseCluster.Coordinator.Control;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Training;
using TorchSharp;

namespace CondenseCluster.Bench.CoordinatorLoad;

/// <summary>What one job of N simulated workers measured (times in milliseconds, sizes in bytes).</summary>
sealed record LoadResult(
    int Workers, int Steps, double Seconds, double CpuSeconds, long ResidentStart, long ResidentEnd, long HeapStart, long HeapEnd,
    double[] StepLatencies, double[] ImportanceRounds, double[] Broadcasts, (long Step, long Bytes)[] Snapshots,
    (long Step, double LagMs, long Bytes)[] Stream, (double Started, double Continued)? Recovery, string? Failure);

/// <summary>
/// One job against the real coordinator: its actor and <see cref="TrainingJob"/> in this process, with the control
/// plane (dashboard, stream, /metrics) observing it as in <c>serve</c>; the simulated workers in a child process. After
/// the last condensing round one worker fails and the job recovers with the others; it is stopped once they train on,
/// before a checkpoint or the finish would fetch a replica state, which simulated workers do not hold: the state fetch,
/// conversion and export are not part of this load.
/// </summary>
static class CoordinatorUnderLoad
{
    public static async Task<LoadResult> RunAsync(LoadSettings settings, int workers, string allocator)
    {
        var monitor = new JobMonitor();
        var metrics = new PrometheusExporter(monitor);
        await using var control = await ControlServer.StartAsync(new ControlSettings(ApiPort: 0, HttpPort: 0), ControlToken.Resolve(null, _ => { }),
            monitor, metrics, new NoJobControl());
        var system = ClusterNode.Start("coordinator", new ClusterEndpoint("127.0.0.1", 0));
        var node = Akka.Cluster.Cluster.Get(system);
        node.Join(node.SelfAddress);
        var coordinator = system.ActorOf(Props.Create(() => new CoordinatorActor()), ClusterNode.CoordinatorName);

        var options = new TrainingOptions
        {
            Arch = LoadSettings.Arch, Model = LoadSettings.Model, Dataset = "imagenet", Epochs = 1, BatchSize = workers, MicroBatches = workers,
        };
        // Twice the bench's steps in one epoch: the condensing rounds fall within them, the epoch's evaluation after.
        var data = (new PlannedDataset(2 * settings.Steps * workers), new PlannedDataset(workers));
        string output = Path.Combine(Path.GetTempPath(), $"coordinator-load-{Environment.ProcessId}-{workers}");
        var run = new RunSettings { Device = torch.CPU, OutputFolder = output, Allocator = allocator };
        var cluster = new ClusterSettings(new ClusterEndpoint("127.0.0.1", 0), 0, workers, 1, "simulated", settings.ChecksumEvery, 262_144);
        var probe = new LoadProbe(options.Model.CondenseFactor - 1);
        var observer = new Observers(monitor, metrics, probe);
        monitor.JobAccepted($"{options.Arch} load, {workers} simulated workers", output);
        var accepted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var ended = new TaskCompletionSource<JobOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        coordinator.Tell(new StartJob(host => new TrainingJob(options, run, data, null, cluster, observer, host, new ReplicaStateClient()), accepted, ended));
        await accepted.Task;

        string seed = node.SelfAddress.ToString();
        using var child = StartWorkers(settings, workers, seed[(seed.IndexOf('@') + 1)..], control.WebAddress);
        var lines = Task.Run(() => Read(child, probe));
        Console.WriteLine($"N = {workers}: simulated workers started ({(workers + settings.WorkersPerSystem - 1) / settings.WorkersPerSystem} actor systems), " +
                          $"waiting for them to register");
        var (heapStart, residentStart) = Memory();
        var self = Process.GetCurrentProcess();
        var (cpuStart, wallStart) = (self.TotalProcessorTime, Stopwatch.GetTimestamp());
        // Measured up to the last condensing round, the load of steady training; the recovery is timed apart.
        var (cpu, seconds, heapEnd, residentEnd) = (TimeSpan.Zero, 0.0, heapStart, residentStart);
        string? failure = null;
        try
        {
            await Wait(probe.Training, ended.Task, TimeSpan.FromMinutes(5), "the cluster to form");
            (heapStart, residentStart) = Memory();
            (cpuStart, wallStart) = (self.TotalProcessorTime, Stopwatch.GetTimestamp());
            using (new Timer(_ => Console.WriteLine($"N = {workers}: {probe.StepsDone} of {settings.Steps} steps, coordinator CPU " +
                       $"{(self.TotalProcessorTime - cpuStart).TotalSeconds:F1} s, resident {Environment.WorkingSet >> 20} MB"), null, 5000, 5000))
                await Wait(probe.Condensed, ended.Task, TimeSpan.FromSeconds(60 + 20 * settings.Steps / settings.Rate), "the last condensing round");
            self.Refresh();
            (cpu, seconds) = (self.TotalProcessorTime - cpuStart, Stopwatch.GetElapsedTime(wallStart).TotalSeconds);
            (heapEnd, residentEnd) = Memory();
            await Wait(probe.Recovered, ended.Task, TimeSpan.FromSeconds(120), "the recovery from a failed worker");
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            failure = e.Message;
            Console.WriteLine($"N = {workers}: {failure}");
        }

        coordinator.Tell(new StopJob("the load bench", Now: true));
        await Task.WhenAny(ended.Task, Task.Delay(TimeSpan.FromSeconds(30)));
        if (!child.WaitForExit(30_000)) child.Kill(entireProcessTree: true);
        await lines;
        ClusterNode.Leave(system);
        if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
        return probe.Result(workers, settings.Steps, seconds, cpu.TotalSeconds, (residentStart, residentEnd), (heapStart, heapEnd), failure);
    }

    /// <summary>Resident memory and the live managed heap (after a full collection, taken outside the measured CPU time).</summary>
    static (long Heap, long Resident) Memory() => (GC.GetTotalMemory(forceFullCollection: true), Environment.WorkingSet);

    static async Task Wait(Task what, Task<JobOutcome> ended, TimeSpan limit, string waitingFor)
    {
        var first = await Task.WhenAny(what, ended, Task.Delay(limit));
        if (first == ended) throw new InvalidOperationException($"the job ended while waiting for {waitingFor}: {ended.Result.Reason}");
        if (first != what) throw new TimeoutException($"no sign of {waitingFor} within {limit.TotalSeconds:0} s");
    }

    static Process StartWorkers(LoadSettings settings, int workers, string seed, string dashboard)
    {
        string self = Environment.ProcessPath!;
        var start = new ProcessStartInfo(self) { RedirectStandardOutput = true };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") start.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        foreach (string arg in (string[])[SimulatedWorkers.Role, $"{workers}", seed, dashboard, .. settings.ToArgs()]) start.ArgumentList.Add(arg);
        return Process.Start(start) ?? throw new InvalidOperationException($"could not start {self}");
    }

    static void Read(Process child, LoadProbe probe)
    {
        while (child.StandardOutput.ReadLine() is { } line)
        {
            var parts = line.Split(' ');
            if (parts.Length < 3 || !parts.Skip(1).All(p => long.TryParse(p, out _)))
            {
                Console.WriteLine($"  workers: {line}"); // Akka's or the workers' own messages
                continue;
            }
            probe.Heard(parts[0], parts.Skip(1).Select(long.Parse).ToArray());
        }
    }

    /// <summary>The control plane's job commands: the bench steers its job itself.</summary>
    sealed class NoJobControl : IJobControl
    {
        static InvalidOperationException Refused => new("the load bench runs its own job");
        public Task<Task<JobOutcome>> StartAsync(JobRequest request) => throw Refused;
        public Task<JobOutcome> StopAsync(string by, bool now) => throw Refused;
        public Task<(string Path, long Step)> CheckpointAsync() => throw Refused;
        public Task<(string Path, long Step, Shared.Model.CostRow Cost)> ExportAsync(string? path) => throw Refused;
    }

    /// <summary>
    /// A dataset of ImageNet's shape that is never read: the coordinator needs only its size (the plan) and shape.
    /// </summary>
    sealed class PlannedDataset(int count) : IImageDataset
    {
        public string Description => $"{count:N0} planned images (never read)";
        public int Count => count;
        public int NumClasses => LoadSettings.Model.NumClasses;
        public int Channels => LoadSettings.Model.InChannels;
        public int Size => LoadSettings.Model.InputSize;
        public int Label(int index) => 0;
        public void Read(int index, Span<float> destination, Random? augmentation) =>
            throw new InvalidOperationException("the load bench's coordinator reads no images");
    }
}

/// <summary>
/// What the bench hears: the coordinator's side as an observer of the job (steps complete, masks decided and in force),
/// the workers' side from their process's lines. Timestamps are <see cref="Stopwatch.GetTimestamp"/>, monotonic and
/// shared by both processes on Linux.
/// </summary>
sealed class LoadProbe(int rounds) : ITrainingObserver
{
    readonly TaskCompletionSource started = new(TaskCreationOptions.RunContinuationsAsynchronously), condensed = new(TaskCreationOptions.RunContinuationsAsynchronously),
        recovered = new(TaskCreationOptions.RunContinuationsAsynchronously);
    long failedAt, recoveryStartedAt, continuedAt;
    readonly ConcurrentDictionary<long, long> completed = [], sent = [], asked = [], decided = [], inForce = [];
    readonly ConcurrentQueue<(long Step, long At, long Bytes)> stream = [];
    readonly ConcurrentQueue<(long Step, long Bytes)> snapshots = [];

    /// <summary>The cluster formed and training began.</summary>
    public Task Training => started.Task;
    /// <summary>The last condensing round's masks are in force.</summary>
    public Task Condensed => condensed.Task;
    /// <summary>Training goes on without the worker that failed.</summary>
    public Task Recovered => recovered.Task;
    public int StepsDone => completed.Count;

    public void Started(RunStarted run) => started.TrySetResult();
    public void Step(StepMetrics step) => completed[step.Step] = Stopwatch.GetTimestamp();
    public void Epoch(EpochMetrics epoch) { }
    public void Finished(TrainingSummary summary) { }

    public void Event(TrainingEvent e)
    {
        switch (e)
        {
            case MasksDecided d: decided[d.Version] = Stopwatch.GetTimestamp(); break;
            case MasksInForce f:
                inForce[f.Version] = Stopwatch.GetTimestamp();
                if (f.Version == rounds) condensed.TrySetResult();
                break;
            case RecoveryStarted: Interlocked.CompareExchange(ref recoveryStartedAt, Stopwatch.GetTimestamp(), 0); break;
            case TrainingContinues { Change: RingChange.Recovery }:
                Interlocked.CompareExchange(ref continuedAt, Stopwatch.GetTimestamp(), 0);
                recovered.TrySetResult();
                break;
        }
    }

    /// <summary>A line of the workers' process (<see cref="ChildLine"/>).</summary>
    public void Heard(string kind, long[] numbers)
    {
        switch (kind)
        {
            case ChildLine.Sent: sent[numbers[0]] = numbers[1]; break;
            case ChildLine.Importance: asked[numbers[0]] = numbers[1]; break;
            case ChildLine.Stream: stream.Enqueue((numbers[0], numbers[1], numbers[2])); break;
            case ChildLine.Snapshot: snapshots.Enqueue((numbers[0], numbers[1])); break;
            case ChildLine.Failed: Interlocked.Exchange(ref failedAt, numbers[1]); break;
        }
    }

    public LoadResult Result(int workers, int steps, double seconds, double cpuSeconds, (long Start, long End) resident, (long Start, long End) heap,
        string? failure) =>
        new(workers, failure is null ? steps : StepsDone, seconds, cpuSeconds, resident.Start, resident.End, heap.Start, heap.End,
            Between(sent, completed), Between(asked, decided), Between(decided, inForce), [.. snapshots],
            stream.Where(s => completed.ContainsKey(s.Step)).Select(s => (s.Step, Milliseconds(completed[s.Step], s.At), s.Bytes)).ToArray(),
            failedAt > 0 && continuedAt > 0 ? (Milliseconds(failedAt, recoveryStartedAt), Milliseconds(failedAt, continuedAt)) : null, failure);

    /// <summary>Milliseconds from each key's time in <paramref name="from"/> to its time in <paramref name="to"/>.</summary>
    static double[] Between(ConcurrentDictionary<long, long> from, ConcurrentDictionary<long, long> to) =>
        from.Where(f => to.ContainsKey(f.Key)).OrderBy(f => f.Key).Select(f => Milliseconds(f.Value, to[f.Key])).ToArray();

    static double Milliseconds(long from, long to) => (to - from) * 1000.0 / Stopwatch.Frequency;
}

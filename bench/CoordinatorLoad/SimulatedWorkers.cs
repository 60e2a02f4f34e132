using System.Diagnostics;
using System.Text.Json;
using Akka.Actor;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Model;

namespace CondenseCluster.Bench.CoordinatorLoad;

/// <summary>
/// The simulated workers' process: N workers with no model, split over actor systems of at most
/// <see cref="LoadSettings.WorkersPerSystem"/> (each system is one cluster member, as a multi-GPU host would be), speaking the
/// real protocol to the coordinator; and a dashboard page's reader (its stream and snapshots). What the coordinator's
/// side needs to know it prints as lines (<see cref="ChildLine"/>), with monotonic timestamps shared by both processes.
/// </summary>
static class SimulatedWorkers
{
    public const string Role = "simulate";

    public static async Task<int> RunAsync(LoadSettings settings, int workers, string seed, string dashboard)
    {
        var shapes = LayerMasks.Initial(LoadSettings.Model).Select(m => (Groups: m.Kept.GetLength(0), Inputs: m.Kept.GetLength(1))).ToArray();
        var ring = new SimulatedRing(settings.Rate, settings.ChecksumEvery);
        var ended = new CountdownEvent(workers);
        var systems = new List<ActorSystem>();
        for (int first = 0; first < workers; first += settings.WorkersPerSystem)
        {
            var system = ClusterNode.Start("worker", new ClusterEndpoint("127.0.0.1", 0, [seed]));
            systems.Add(system);
            var (from, to) = (first, Math.Min(workers, first + settings.WorkersPerSystem));
            var coordinator = system.ActorSelection(ClusterNode.SeedAddress(seed) + ClusterNode.CoordinatorPath);
            Akka.Cluster.Cluster.Get(system).RegisterOnMemberUp(() =>
            {
                for (int i = from; i < to; i++)
                {
                    string id = $"sim-{i:D4}";
                    // Nothing listens there: a data endpoint is only dialled for state copies, which this bench never asks for.
                    var registration = new RegisterWorker(id, $"http://127.0.0.1:{20_000 + i}", "simulated", 1);
                    system.ActorOf(Props.Create(() => new SimulatedWorker(registration, shapes, ring, coordinator, ended)), id);
                }
            });
        }
        using var stop = new CancellationTokenSource();
        var page = Task.WhenAll(DashboardPage.FollowStreamAsync(dashboard, stop.Token), DashboardPage.PollSnapshotsAsync(dashboard, stop.Token));
        await Task.Run(ended.Wait);
        stop.Cancel();
        try { await page; }
        catch (OperationCanceledException) { }
        Console.Out.Flush();
        foreach (var system in systems) await system.Terminate();
        return 0;
    }
}

/// <summary>What the simulated workers' process tells the bench, one line each: a kind, then numbers.</summary>
static class ChildLine
{
    /// <summary>The last worker's report of step S was sent at T: "sent S T".</summary>
    public const string Sent = "sent";
    /// <summary>Rank 0 was asked for importance of mask version V at T: "importance V T".</summary>
    public const string Importance = "importance";
    /// <summary>The page's stream delivered step S at T, after B bytes of stream in all: "stream S T B".</summary>
    public const string Stream = "stream";
    /// <summary>The page's snapshot at status step S was B bytes: "snapshot S B".</summary>
    public const string Snapshot = "snapshot";

    public static void Write(string kind, params long[] numbers) => Console.WriteLine($"{kind} {string.Join(' ', numbers)}");
}

/// <summary>
/// One simulated worker: registers until accepted, joins rings, hands its segments to the shared <see cref="SimulatedRing"/>,
/// answers importance (rank 0, every learned layer at its real shape) and mask broadcasts (the masks unpacked and
/// checksummed as a replica installs them).
/// </summary>
sealed class SimulatedWorker : ReceiveActor, IWithTimers
{
    sealed record Retry;

    public SimulatedWorker(RegisterWorker registration, (int Groups, int Inputs)[] shapes, SimulatedRing ring, ActorSelection coordinator, CountdownEvent ended)
    {
        string id = registration.WorkerId;
        int rank = -1;
        long step = 0;
        Receive<Retry>(_ => coordinator.Tell(registration));
        Receive<WorkerAccepted>(_ => Timers.Cancel("register"));
        Receive<JoinJob>(join =>
        {
            rank = join.Rank;
            ring.Form(join.Endpoints.Count);
            Sender.Tell(new ReplicaReady(id, step, SimulatedRing.Weights(step)));
        });
        Receive<RunSteps>(segment =>
        {
            ring.Arrive(new RingMember(id, Self, Sender), segment);
            step = segment.To; // where the replica stands when the coordinator next asks (it waits for StepsDone; no yields here)
        });
        Receive<ComputeImportance>(request =>
        {
            if (rank != 0) return; // rank 0 answers for the ring, as a real one does after averaging
            ChildLine.Write(ChildLine.Importance, request.MaskVersion, Stopwatch.GetTimestamp());
            var random = new Random((int)request.MaskVersion);
            for (int layer = 0; layer < shapes.Length; layer++)
            {
                var importance = new float[shapes[layer].Groups, shapes[layer].Inputs];
                for (int g = 0; g < importance.GetLength(0); g++)
                    for (int j = 0; j < importance.GetLength(1); j++)
                        importance[g, j] = random.NextSingle();
                Sender.Tell(MaskWire.Importance(request.MaskVersion, layer, importance));
            }
        });
        Receive<ApplyMasks>(masks =>
        {
            var installed = masks.KeptColumns.Select((bits, i) => new LayerMask(masks.Stages[i], MaskWire.Unpack(bits, shapes[i].Groups, shapes[i].Inputs))).ToArray();
            Sender.Tell(new MasksApplied(id, masks.MaskVersion, ModelCondensing.Checksum(installed), SimulatedRing.Weights(step)));
        });
        Receive<JobEnded>(_ =>
        {
            ended.Signal();
            Context.Stop(Self);
        });
        coordinator.Tell(registration);
        Timers.StartPeriodicTimer("register", new Retry(), TimeSpan.FromSeconds(2));
    }

    public ITimerScheduler Timers { get; set; } = null!;
}

/// <summary>A ring member as the simulated ring sends for it: its name, its actor (the sender), the coordinator that asked.</summary>
sealed record RingMember(string Id, IActorRef Self, IActorRef Coordinator);

/// <summary>
/// Stands in for the ring all-reduce: once every member has been asked to run a segment, one thread runs its steps at
/// the set rate for all of them, sending each worker's <see cref="StepReport"/> as its replica would (the weight checksum
/// every <c>checksum-every</c> steps), then each one's <see cref="StepsDone"/>.
/// </summary>
sealed class SimulatedRing(double rate, int checksumEvery)
{
    readonly object gate = new();
    readonly List<RingMember> arrived = [];
    int size;

    /// <summary>All replicas agree: the checksum only says which step their weights are at.</summary>
    public static string Weights(long step) => $"simulated@{step}";

    public void Form(int members)
    {
        lock (gate) size = members;
    }

    public void Arrive(RingMember member, RunSteps segment)
    {
        RingMember[] ring;
        lock (gate)
        {
            arrived.Add(member);
            if (arrived.Count < size) return;
            ring = [.. arrived];
            arrived.Clear();
        }
        new Thread(() => Run(ring, segment)) { IsBackground = true, Name = "simulated ring" }.Start();
    }

    void Run(RingMember[] ring, RunSteps segment)
    {
        long interval = (long)(Stopwatch.Frequency / rate), next = Stopwatch.GetTimestamp();
        for (long s = segment.From; s < segment.To; s++)
        {
            next += interval;
            if (Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), next) is { Ticks: > 0 } wait) Thread.Sleep(wait);
            string? checksum = (s + 1) % checksumEvery == 0 ? Weights(s + 1) : null;
            foreach (var m in ring)
                m.Coordinator.Tell(new StepReport(m.Id, s, LossSum: 6.9, Correct: 0, Samples: 1, ComputeMs: 1000 / rate - 5, AllReduceMs: 4, DataWaitMs: 1,
                    checksum, AllReduceBytes: 47_690_720, ResidentBytes: 400L << 20), m.Self);
            ChildLine.Write(ChildLine.Sent, s, Stopwatch.GetTimestamp());
        }
        foreach (var m in ring) m.Coordinator.Tell(new StepsDone(m.Id, segment.To, Weights(segment.To)), m.Self);
    }
}

/// <summary>A dashboard page left open during the run, as a browser holds it: the update stream followed, the snapshot reloaded every second.</summary>
static class DashboardPage
{
    public static async Task FollowStreamAsync(string dashboard, CancellationToken stop)
    {
        using var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
        using var response = await http.GetAsync($"{dashboard}/api/stream", HttpCompletionOption.ResponseHeadersRead, stop);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(stop));
        long bytes = 0;
        while (await reader.ReadLineAsync(stop) is { } line)
        {
            bytes += line.Length + 1;
            // Only the step curve's points are parsed: they say how far behind the coordinator the page is.
            if (!line.StartsWith("data: ", StringComparison.Ordinal) || !line.Contains("\"step\": {", StringComparison.Ordinal)) continue;
            using var update = JsonDocument.Parse(line.AsMemory(6));
            ChildLine.Write(ChildLine.Stream, Number(update.RootElement.GetProperty("step").GetProperty("step")), Stopwatch.GetTimestamp(), bytes);
        }
    }

    public static async Task PollSnapshotsAsync(string dashboard, CancellationToken stop)
    {
        using var http = new HttpClient();
        while (!stop.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromSeconds(1), stop);
            string snapshot = await http.GetStringAsync($"{dashboard}/api/snapshot", stop);
            using var parsed = JsonDocument.Parse(snapshot);
            ChildLine.Write(ChildLine.Snapshot, Number(parsed.RootElement.GetProperty("status").GetProperty("step")), snapshot.Length);
        }
    }

    /// <summary>Protobuf's JSON writes 64-bit integers as strings.</summary>
    static long Number(JsonElement value) => value.ValueKind == JsonValueKind.String ? long.Parse(value.GetString()!) : value.GetInt64();
}

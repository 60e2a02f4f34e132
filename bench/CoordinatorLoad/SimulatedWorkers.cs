using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
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
        var ring = new SimulatedRing(settings.Rate, settings.ChecksumEvery, settings.FailureStep);
        var ended = new CountdownEvent(workers);
        var systems = new List<ActorSystem>();
        using var stop = new CancellationTokenSource();
        var endpoints = Enumerable.Range(0, workers).Select(_ => DataEndpoint(stop.Token)).ToArray();
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
                    var registration = new RegisterWorker(id, endpoints[i], "simulated", 1);
                    system.ActorOf(Props.Create(() => new SimulatedWorker(registration, shapes, ring, coordinator, ended)), id);
                }
            });
        }
        var page = Task.WhenAll(DashboardPage.FollowStreamAsync(dashboard, stop.Token), DashboardPage.PollSnapshotsAsync(dashboard, stop.Token));
        await Task.Run(ended.Wait);
        stop.Cancel();
        try { await page; }
        catch (OperationCanceledException) { }
        Console.Out.Flush();
        foreach (var system in systems) await system.Terminate();
        return 0;
    }

    /// <summary>
    /// A worker's data endpoint: it takes connections, which is all a recovery's probe asks of a live worker (one that
    /// refuses them is gone); the state copies that a real one would serve there this bench never asks for.
    /// </summary>
    static string DataEndpoint(CancellationToken stop)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        _ = Task.Run(async () =>
        {
            using var _ = stop.Register(listener.Stop);
            try
            {
                while (true) (await listener.AcceptTcpClientAsync(stop)).Dispose();
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { }
        });
        return $"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}";
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
    /// <summary>A worker failed before step S, at T: "failed S T".</summary>
    public const string Failed = "failed";

    public static void Write(string kind, params long[] numbers) => Console.WriteLine($"{kind} {string.Join(' ', numbers)}");
}

/// <summary>
/// One simulated worker: registers until accepted, joins rings, hands its segments to the shared <see cref="SimulatedRing"/>,
/// answers importance (rank 0, every learned layer at its real shape) and mask broadcasts (the masks unpacked and
/// checksummed as a replica installs them), and stops its steps when a recovery asks it to.
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
            if (join.From is { } source) step = source.Step; // a real replica behind the source would copy its state
            ring.Form(join.Members);
            Sender.Tell(new ReplicaReady(id, step, SimulatedRing.Weights(step)));
        });
        Receive<RunSteps>(segment =>
        {
            ring.Arrive(new RingMember(id, Self, Sender), segment);
            step = segment.To; // where the replica stands when the coordinator next asks (it waits for StepsDone; no yields here)
        });
        Receive<AbortSteps>(_ =>
        {
            ring.Abort();
            step = ring.Completed;
            Sender.Tell(new StepsAborted(id, step));
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
        // Left idle, not stopped: the coordinator takes a watched worker actor's end for its node's, which here holds
        // hundreds of simulated workers (a real worker's process is a node of its own).
        Receive<Excluded>(_ => ended.Signal());
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
/// every <c>checksum-every</c> steps), then each one's <see cref="StepsDone"/>. Before step <paramref name="failureStep"/>
/// (once: the step is redone after the recovery) the ring's last rank fails (as a worker whose data or device broke: excluded, not gone) and the segment stops there,
/// as a broken ring stops, until the coordinator's recovery aborts it and forms the next ring.
/// </summary>
sealed class SimulatedRing(double rate, int checksumEvery, long failureStep)
{
    readonly object gate = new();
    readonly List<RingMember> arrived = [];
    int size, running;  // which segment may go on running: an abort moves it on
    long completed, failAt = failureStep;

    /// <summary>The steps every member's report was sent for.</summary>
    public long Completed => Interlocked.Read(ref completed);

    /// <summary>Stops the running segment after the step it is sending, as an abort cuts a real ring.</summary>
    public void Abort() => Interlocked.Increment(ref running);

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
        int current = Volatile.Read(ref running);
        new Thread(() => Run(ring, segment, current)) { IsBackground = true, Name = "simulated ring" }.Start();
    }

    void Run(RingMember[] ring, RunSteps segment, int current)
    {
        long interval = (long)(Stopwatch.Frequency / rate), next = Stopwatch.GetTimestamp();
        for (long s = segment.From; s < segment.To; s++)
        {
            if (Volatile.Read(ref running) != current) return;
            if (s == failAt && Interlocked.Exchange(ref failAt, -1) == s)
            {
                var failing = ring[^1];
                ChildLine.Write(ChildLine.Failed, s, Stopwatch.GetTimestamp());
                failing.Coordinator.Tell(new WorkerFailed(failing.Id, "a simulated failure"), failing.Self);
                return;
            }
            next += interval;
            if (Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), next) is { Ticks: > 0 } wait) Thread.Sleep(wait);
            string? checksum = (s + 1) % checksumEvery == 0 ? Weights(s + 1) : null;
            foreach (var m in ring)
                m.Coordinator.Tell(new StepReport(m.Id, s, LossSum: 6.9, Correct: 0, Samples: 1, ComputeMs: 1000 / rate - 5, AllReduceMs: 4, DataWaitMs: 1,
                    checksum, AllReduceBytes: 47_690_720, ResidentBytes: 400L << 20), m.Self);
            Interlocked.Exchange(ref completed, s + 1);
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

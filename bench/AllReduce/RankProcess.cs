using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using CondenseCluster.Shared.Comm;

namespace CondenseCluster.Bench.AllReduce;

/// <summary>
/// One rank: a data-plane node per ring method in its own process (a ring over TCP; one as rings run by default,
/// Unix sockets to ranks on this host; and with --hosts, one ring and the hierarchical form over simulated hosts, this
/// rank's own 127.0.0.x), driven by the launcher line by line over stdin/stdout, so that every rank starts each timed
/// all-reduce on the launcher's word and none waits on another rank's bookkeeping.
/// </summary>
static class RankProcess
{
    public const string Role = "--rank-process";

    // Launcher → rank: "ring RANK ENDPOINTS-OF-METHOD-1... ENDPOINTS-OF-METHOD-2..." once (every rank's endpoint of each
    // method in turn), then "probe tcp|unix|grpc BYTES", "buffer FLOATS", "go OPERATION METHOD fp32|fp16", "quit".
    // Rank → launcher: "endpoints E1 E2 ..." (one per method) first, then one line per command: "probed BYTES_PER_S",
    // "ready", "done START END TRANSPORT" (when the all-reduce was entered and left: Stopwatch timestamps, which are
    // nanoseconds of CLOCK_MONOTONIC on Linux, the clock every process of the machine shares).
    public static async Task<int> RunAsync(BenchSettings settings)
    {
        var options = settings.SegmentBytes is { } bytes ? new DataPlaneOptions { SegmentBytes = bytes } : new DataPlaneOptions();
        var methods = settings.RingMethods;
        var nodes = methods.ToDictionary(m => m, m => new DataPlaneNode(m switch
        {
            Method.Tcp => options with { Transport = RingTransportKind.Tcp },
            Method.Unix => options with { Transport = RingTransportKind.Unix },
            Method.Shm => options,
            _ => options with { ListenAddress = settings.Listen ?? throw new UsageException("the simulated-host methods need --listen") },
        }));
        IMemoryOwner<float> buffer = new FloatArray(0);
        try
        {
            var endpoints = new List<string>();
            foreach (var method in methods) endpoints.Add(await nodes[method].StartAsync());
            Reply($"endpoints {string.Join(' ', endpoints)}");
            int rank = 0, size = 0;
            while (await Console.In.ReadLineAsync() is { } line)
            {
                string[] words = line.Split(' ');
                switch (words[0])
                {
                    case "ring":
                        rank = Int(words[1]);
                        size = (words.Length - 2) / methods.Length;
                        for (int i = 0; i < methods.Length; i++)
                            nodes[methods[i]].ConfigureRing(rank, words[(2 + i * size)..(2 + (i + 1) * size)], generation: 1,
                                methods[i] == Method.Hier ? RingTopology.Auto : RingTopology.Flat);
                        break;
                    case "probe":
                        long probeBytes = long.Parse(words[2], CultureInfo.InvariantCulture);
                        double rate = words[1] switch
                        {
                            "tcp" => await nodes[Method.Tcp].MeasureSocketBandwidthAsync(probeBytes),
                            "unix" => await nodes[Method.Unix].MeasureSocketBandwidthAsync(probeBytes),
                            _ => await nodes[Method.Tcp].MeasureGrpcStreamBandwidthAsync(probeBytes),
                        };
                        Reply($"probed {rate.ToString("R", CultureInfo.InvariantCulture)}");
                        break;
                    case "buffer":
                        buffer.Dispose();
                        // As a worker's gradients: in shared memory where ranks on this host may share it.
                        buffer = nodes[Method.Shm].CreateBuffer(Int(words[1]));
                        Fill(buffer.Memory.Span, rank);
                        Reply("ready");
                        break;
                    case "go":
                        var node = nodes[Enum.Parse<Method>(words[2], ignoreCase: true)];
                        long start = Stopwatch.GetTimestamp();
                        await node.AllReduceAsync(buffer.Memory, long.Parse(words[1], CultureInfo.InvariantCulture), BenchSettings.Precision(words[3]));
                        long end = Stopwatch.GetTimestamp();
                        // Checked and refilled off the clock: a fast wrong answer must not pass for a result.
                        Verify(buffer.Memory.Span, size);
                        Fill(buffer.Memory.Span, rank);
                        Reply($"done {start} {end} {node.Transport}");
                        break;
                    case "quit":
                        return 0;
                    default:
                        throw new InvalidOperationException($"rank {rank}: unknown command '{line}'");
                }
            }
            return 0;
        }
        finally
        {
            buffer.Dispose();
            foreach (var node in nodes.Values) await node.DisposeAsync();
        }
    }

    static void Reply(string line) => Console.Out.WriteLine(line);

    static int Int(string text) => int.Parse(text, CultureInfo.InvariantCulture);

    // Small integers: every partial sum is exact in float32 and in a scaled half, so the expected total is known to the bit.
    static float Pattern(int index) => index % 251 - 125;

    static void Fill(Span<float> buffer, int rank)
    {
        for (int i = 0; i < buffer.Length; i++) buffer[i] = (rank + 1) * Pattern(i);
    }

    static void Verify(ReadOnlySpan<float> buffer, int size)
    {
        int factor = size * (size + 1) / 2;
        for (int i = 0; i < buffer.Length; i++)
            if (buffer[i] != factor * Pattern(i))
                throw new InvalidOperationException($"element {i} is {buffer[i]}, expected {factor * Pattern(i)}: the all-reduce summed wrongly");
    }
}

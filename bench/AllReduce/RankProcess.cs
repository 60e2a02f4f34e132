using System.Diagnostics;
using System.Globalization;
using CondenseCluster.Shared.Comm;

namespace CondenseCluster.Bench.AllReduce;

/// <summary>
/// One rank: a data-plane node in its own process, driven by the launcher line by line over stdin/stdout, so that
/// every rank starts each timed all-reduce on the launcher's word and none waits on another rank's bookkeeping.
/// </summary>
static class RankProcess
{
    public const string Role = "--rank-process";

    // Launcher → rank: "ring RANK ENDPOINT..." once, then "probe BYTES", "buffer FLOATS", "go OPERATION fp32|fp16", "quit".
    // Rank → launcher: "endpoint URL" first, then one line per command: "probed BYTES_PER_S", "ready", "done SECONDS".
    public static async Task<int> RunAsync(BenchSettings settings)
    {
        var options = settings.MessageBytes is { } bytes ? new DataPlaneOptions { MessageBytes = bytes } : new DataPlaneOptions();
        await using var node = new DataPlaneNode(options);
        Reply($"endpoint {await node.StartAsync()}");
        int rank = 0, size = 0;
        float[] buffer = [];
        while (await Console.In.ReadLineAsync() is { } line)
        {
            string[] words = line.Split(' ');
            switch (words[0])
            {
                case "ring":
                    rank = Int(words[1]);
                    size = words.Length - 2;
                    node.ConfigureRing(rank, words[2..], generation: 1);
                    break;
                case "probe":
                    double rate = await node.MeasureStreamBandwidthAsync(long.Parse(words[1], CultureInfo.InvariantCulture));
                    Reply($"probed {rate.ToString("R", CultureInfo.InvariantCulture)}");
                    break;
                case "buffer":
                    buffer = new float[Int(words[1])];
                    Fill(buffer, rank);
                    Reply("ready");
                    break;
                case "go":
                    var watch = Stopwatch.StartNew();
                    await node.AllReduceAsync(buffer, long.Parse(words[1], CultureInfo.InvariantCulture), BenchSettings.Precision(words[2]));
                    double seconds = watch.Elapsed.TotalSeconds;
                    // Checked and refilled off the clock: a fast wrong answer must not pass for a result.
                    Verify(buffer, size);
                    Fill(buffer, rank);
                    Reply($"done {seconds.ToString("R", CultureInfo.InvariantCulture)}");
                    break;
                case "quit":
                    return 0;
                default:
                    throw new InvalidOperationException($"rank {rank}: unknown command '{line}'");
            }
        }
        return 0;
    }

    static void Reply(string line) => Console.Out.WriteLine(line);

    static int Int(string text) => int.Parse(text, CultureInfo.InvariantCulture);

    // Small integers: every partial sum is exact in float32 and in a scaled half, so the expected total is known to the bit.
    static float Pattern(int index) => index % 251 - 125;

    static void Fill(float[] buffer, int rank)
    {
        for (int i = 0; i < buffer.Length; i++) buffer[i] = (rank + 1) * Pattern(i);
    }

    static void Verify(float[] buffer, int size)
    {
        int factor = size * (size + 1) / 2;
        for (int i = 0; i < buffer.Length; i++)
            if (buffer[i] != factor * Pattern(i))
                throw new InvalidOperationException($"element {i} is {buffer[i]}, expected {factor * Pattern(i)}: the all-reduce summed wrongly");
    }
}

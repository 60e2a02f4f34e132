using CondenseCluster.Shared.Training;

namespace CondenseCluster.Bench.AllReduce;

/// <summary>
/// The ring's cost model: 2(N−1) hops of latency α each, and 2(N−1)/N of the buffer through bandwidth β per rank.
/// Both come from the smallest ring measured, where every rank has a core of this machine to itself (larger rings on
/// two cores share them, which the model does not describe): α is the median per-hop time of its small buffers
/// (≤ 64 KB, where bytes cost next to nothing), β what remains of its largest buffer once the hops are taken off.
/// BENCHMARKS.md extrapolates it.
/// </summary>
sealed record AlphaBeta(string Method, double AlphaUs, double BetaGBps, string From)
{
    const long SmallBytes = 64_000;

    public double Alpha => AlphaUs / 1e6;
    public double Beta => BetaGBps * 1e9;

    /// <summary>Seconds for one ring of <paramref name="ranks"/> to all-reduce <paramref name="bytes"/>.</summary>
    public double Ring(int ranks, double bytes) => 2.0 * (ranks - 1) * Alpha + 2.0 * (ranks - 1) / ranks * bytes / Beta;

    /// <summary>One fit per flat method whose float32 results have small buffers and a large one.</summary>
    public static IEnumerable<AlphaBeta> Fit(IEnumerable<Result> results)
    {
        foreach (var group in results.Where(r => r.Precision == "fp32" && r.Method != AllReduce.Method.Hier).GroupBy(r => r.Method))
        {
            int smallest = group.Min(r => r.Workers);
            var small = group.Where(r => r.Workers == smallest && r.Bytes <= SmallBytes).ToArray();
            var large = group.Where(r => r.Workers == smallest && r.Bytes > SmallBytes).MaxBy(r => r.Bytes);
            if (small.Length == 0 || large is null) continue;
            double alpha = Statistics.Median(small.Select(r => r.MedianMs / 1e3 / (2.0 * (r.Workers - 1))));
            double left = large.MedianMs / 1e3 - 2.0 * (large.Workers - 1) * alpha;
            if (left <= 0) continue;
            double beta = 2.0 * (large.Workers - 1) / large.Workers * large.Bytes / left;
            yield return new AlphaBeta(group.Key.ToString().ToLowerInvariant(), alpha * 1e6, beta / 1e9,
                $"N = {smallest}: α from {small.Length} buffer sizes of ≤ {SmallBytes / 1000} KB, β from {large.Bytes / 1e6:0.#} MB");
        }
    }
}

/// <summary>
/// What the fitted model predicts for a cluster: nodes joined by links of a given speed, each hop across nodes
/// costing the measured software latency α plus the wire's, and <see cref="RanksPerNode"/> ranks per node for the
/// hierarchical form, whose ring within a node runs at the fit of the same-host transport (shared memory).
/// </summary>
static class Prediction
{
    public const int RanksPerNode = 8;
    public const double WireLatencyUs = 5; // one switch hop in a datacenter network, assumed
    static readonly int[] Nodes = [8, 32, 128, 512, 1024];
    static readonly double[] LinkGbits = [25, 100];
    static readonly (string Name, double Bytes)[] Buffers =
        [("CondenseNet-86, 5.8 MB", 1_451_594 * 4.0), ("CondenseNet-74, 47.7 MB", 11_922_680 * 4.0), ("CondenseNet-74 condensed, 23.2 MB", 5_805_944 * 4.0)];

    public static void Print(AlphaBeta across, AlphaBeta within)
    {
        Console.WriteLine($"prediction: α across nodes = {across.AlphaUs:0.0} µs ({across.Method} fit) + {WireLatencyUs} µs wire, β = the link; "
            + $"hierarchical: {RanksPerNode} ranks per node, within a node the {within.Method} fit (α {within.AlphaUs:0.0} µs, β {within.BetaGBps:0.00} GB/s); "
            + "flat: one ring of every rank, all hops across nodes (the worst case: ranks of a node interleaved)");
        Console.WriteLine($"{"buffer",-34} {"Gbit/s",6} {"nodes",6} {"ranks",6} {"flat ms",9} {"hier ms",9} {"latency share flat",19}");
        foreach (var (name, bytes) in Buffers)
            foreach (double gbits in LinkGbits)
                foreach (int nodes in Nodes)
                {
                    var link = across with { AlphaUs = across.AlphaUs + WireLatencyUs, BetaGBps = gbits / 8 };
                    int ranks = nodes * RanksPerNode;
                    double flat = link.Ring(ranks, bytes);
                    double latency = 2.0 * (ranks - 1) * link.Alpha;
                    // Within the node a reduce-scatter and an all-gather (each half a ring), across nodes a ring on 1/8 of the buffer.
                    double hier = within.Ring(RanksPerNode, bytes) + link.Ring(nodes, bytes / RanksPerNode);
                    Console.WriteLine($"{name,-34} {gbits,6:0} {nodes,6} {ranks,6} {flat * 1e3,9:0.0} {hier * 1e3,9:0.0} {latency / flat,19:P0}");
                }
    }
}

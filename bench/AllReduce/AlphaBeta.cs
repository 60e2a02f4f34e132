namespace CondenseCluster.Bench.AllReduce;

/// <summary>
/// The ring's cost model: 2(N−1) hops of latency α each, and 2(N−1)/N of the buffer through bandwidth β. Fitted by
/// least squares to the medians measured (BENCHMARKS.md extrapolates it to many nodes).
/// </summary>
sealed record AlphaBeta(string Method, int Points, double AlphaUs, double BetaGBps, double WorstResidual)
{
    public static double Seconds(int workers, double bytes, double alphaSeconds, double betaBytesPerSecond) =>
        2.0 * (workers - 1) * alphaSeconds + 2.0 * (workers - 1) / workers * bytes / betaBytesPerSecond;

    /// <summary>One fit per method over its float32 results; none where they do not span two ring sizes or buffer sizes.</summary>
    public static IEnumerable<AlphaBeta> Fit(IEnumerable<Result> results)
    {
        foreach (var group in results.Where(r => r.Precision == "fp32").GroupBy(r => r.Method))
        {
            var points = group.Select(r => (Hops: 2.0 * (r.Workers - 1), Volume: 2.0 * (r.Workers - 1) / r.Workers * r.Bytes, Seconds: r.MedianMs / 1e3)).ToArray();
            // Normal equations of T = a·hops + b·volume.
            double hh = points.Sum(p => p.Hops * p.Hops), hv = points.Sum(p => p.Hops * p.Volume), vv = points.Sum(p => p.Volume * p.Volume);
            double ht = points.Sum(p => p.Hops * p.Seconds), vt = points.Sum(p => p.Volume * p.Seconds);
            double determinant = hh * vv - hv * hv;
            if (points.Length < 2 || Math.Abs(determinant) <= 1e-12 * hh * vv) continue;
            double a = (ht * vv - vt * hv) / determinant, b = (vt * hh - ht * hv) / determinant;
            if (a <= 0 || b <= 0) continue; // the medians do not follow the model at all
            double worst = points.Max(p => Math.Abs(a * p.Hops + b * p.Volume - p.Seconds) / p.Seconds);
            yield return new AlphaBeta(group.Key.ToString().ToLowerInvariant(), points.Length, a * 1e6, 1 / b / 1e9, worst);
        }
    }
}

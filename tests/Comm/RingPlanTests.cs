using CondenseCluster.Shared.Comm;
using Xunit;

namespace CondenseCluster.Tests.Comm;

public class RingPlanTests
{
    public static readonly long[] Lengths = [0, 1, 2, 3, 5, 7, 13, 100, 1000, 100_003];

    [Fact]
    public void ChunksTileTheBufferWithSizesWithinOne()
    {
        foreach (long length in Lengths.Concat(Enumerable.Range(0, 40).Select(i => (long)i)))
            for (int parts = 1; parts <= 9; parts++)
            {
                var chunks = Enumerable.Range(0, parts).Select(i => RingPlan.Chunk(length, parts, i)).ToArray();
                Assert.Equal(0, chunks[0].Start);
                for (int i = 1; i < parts; i++) Assert.Equal(chunks[i - 1].Start + chunks[i - 1].Length, chunks[i].Start);
                Assert.Equal(length, chunks[^1].Start + chunks[^1].Length);
                Assert.True(chunks.Max(c => c.Length) - chunks.Min(c => c.Length) <= 1, $"length {length}, {parts} parts");
            }
    }

    [Theory]
    [InlineData(0, 4)]
    [InlineData(1, 4)]
    [InlineData(4, 4)]
    [InlineData(5, 4)]
    [InlineData(1000, 7)]
    public void SlicesCoverARangeInOrderAndAnEmptyOneGivesOneEmptySlice(int length, int max)
    {
        var slices = RingPlan.Slices(10, length, max).ToArray();
        Assert.Equal(Math.Max(1, (length + max - 1) / max), slices.Length);
        Assert.Equal(10, slices[0].Offset);
        for (int i = 1; i < slices.Length; i++) Assert.Equal(slices[i - 1].Offset + slices[i - 1].Length, slices[i].Offset);
        Assert.Equal(length, slices.Sum(s => s.Length));
        Assert.All(slices, s => Assert.InRange(s.Length, 0, max));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(6)]
    public void EachRankSendsAndReceivesTwoNMinusOneNthsOfTheBuffer(int size)
    {
        long length = 60 * 7;
        for (int rank = 0; rank < size; rank++)
        {
            Assert.Equal(2 * (size - 1) * length / size, RingPlan.Sends(rank, size, length, 5).Sum(s => (long)s.Length));
            Assert.Equal(2 * (size - 1) * length / size, RingPlan.Receives(rank, size, length, 5).Sum(s => (long)s.Length));
        }
    }

    [Fact]
    public void WhatARankSendsAtAStepIsWhatItReceivedTheStepBefore()
    {
        // The premise of the message pipeline in RingAllReduce.
        foreach (int size in new[] { 2, 3, 5 })
            foreach (long length in Lengths.Where(l => l < 10_000))
                for (int rank = 0; rank < size; rank++)
                {
                    var sends = RingPlan.Sends(rank, size, length, 3).ToList();
                    var receives = RingPlan.Receives(rank, size, length, 3).ToList();
                    int first = sends.Count(s => s is { Phase: RingPhase.ReduceScatter, Step: 0 });
                    int last = receives.Count(r => r.Phase == RingPhase.AllGather && r.Step == size - 2);
                    Assert.Equal(receives.SkipLast(last).Select(r => (r.Chunk, r.Offset, r.Length)),
                        sends.Skip(first).Select(s => (s.Chunk, s.Offset, s.Length)));
                }
    }

    [Fact]
    public void TheRingComputedInMemorySumsExactlyAndIdenticallyOnEveryRank()
    {
        var random = new Random(5);
        for (int size = 1; size <= 6; size++)
            foreach (long length in Lengths)
            {
                var integers = Buffers(size, length, (r, i) => (i % 101) * (r + 1) - 3 * r);
                Simulate(integers);
                for (int i = 0; i < length; i++)
                    Assert.Equal(Enumerable.Range(0, size).Sum(r => (i % 101) * (r + 1) - 3 * r), integers[0][i]);
                AssertBitIdentical(integers);

                var randoms = Buffers(size, length, (_, _) => (float)random.NextDouble() * 2 - 1);
                var sums = Enumerable.Range(0, (int)length).Select(i => randoms.Sum(b => (double)b[i])).ToArray();
                Simulate(randoms);
                AssertBitIdentical(randoms);
                for (int i = 0; i < length; i++) Assert.Equal(sums[i], randoms[0][i], 1e-5);
            }
    }

    /// <summary>Runs the plan with plain arrays: every rank's messages of a step are taken, then delivered to rank + 1.</summary>
    static void Simulate(float[][] buffers)
    {
        int size = buffers.Length;
        long length = buffers[0].Length;
        int maxSlice = length < 1000 ? 3 : 997;
        var sends = Enumerable.Range(0, size).Select(r => RingPlan.Sends(r, size, length, maxSlice).ToList()).ToArray();
        var receives = Enumerable.Range(0, size).Select(r => RingPlan.Receives(r, size, length, maxSlice).ToList()).ToArray();
        foreach (var (phase, step) in RingPlan.Steps(size))
        {
            var inFlight = Enumerable.Range(0, size).Select(r => sends[r].Where(s => s.Phase == phase && s.Step == step)
                .Select(s => (Slice: s, Values: buffers[r].AsSpan(s.Offset, s.Length).ToArray())).ToList()).ToArray();
            for (int r = 0; r < size; r++)
            {
                var expected = receives[r].Where(s => s.Phase == phase && s.Step == step).ToList();
                var arriving = inFlight[(r - 1 + size) % size];
                Assert.Equal(expected, arriving.Select(m => m.Slice));
                foreach (var (slice, values) in arriving)
                {
                    var target = buffers[r].AsSpan(slice.Offset, slice.Length);
                    if (phase == RingPhase.ReduceScatter) FloatPayload.AddTo(values, target);
                    else values.CopyTo(target);
                }
            }
        }
    }

    internal static float[][] Buffers(int size, long length, Func<int, int, float> value) =>
        [.. Enumerable.Range(0, size).Select(r => Enumerable.Range(0, (int)length).Select(i => value(r, i)).ToArray())];

    internal static void AssertBitIdentical(float[][] buffers)
    {
        foreach (var b in buffers.Skip(1))
            Assert.True(buffers[0].AsSpan().SequenceEqual(b), "the ranks' results differ");
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Numerics.Tensors;
using System.Reflection;
using System.Runtime.InteropServices;
using CondenseCluster.Shared.Training;

// Why the data plane's ring uses blocking sockets on two dedicated threads (Shared/Comm/RingSockets.cs): the ring's
// exchange of two ranks (each sends its chunk in segments while it receives and sums the other's, then forwards the
// sums) run both ways, in two processes, interleaved, with the wall time and the CPU time each rank used per exchange.
//   socket-modes-bench [--floats 1451594] [--segment-kb 256] [--repeats 40] [--rounds 3]
if (args is ["--peer", var peerMode, var peerTransport, var rankText, var endpointText, .. var rest])
    return Peer.Run(peerMode, peerTransport, int.Parse(rankText, CultureInfo.InvariantCulture), endpointText, Options.Parse(rest));

var options = Options.Parse(args);
var results = new Dictionary<string, List<(double Ms, double CpuMs)>>();
for (int round = 0; round < options.Rounds; round++)
    foreach (string transport in new[] { "tcp", "unix" })
        foreach (string mode in new[] { "blocking", "async" })
        {
            string endpoint = transport == "tcp" ? $"{FreePort()}" : $"socket-modes-{Environment.ProcessId}-{round}-{mode}";
            var peers = new[] { 0, 1 }.Select(rank => Start(mode, transport, rank, endpoint, args)).ToArray();
            var lines = peers.Select(p => p.StandardOutput.ReadToEndAsync()).ToArray();
            foreach (var p in peers) p.WaitForExit();
            if (peers.Any(p => p.ExitCode != 0)) throw new InvalidOperationException($"a {mode} {transport} peer failed");
            var measured = lines.Select(l => l.Result.Split(' ').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
            var list = results.TryGetValue($"{mode} {transport}", out var existing) ? existing : results[$"{mode} {transport}"] = [];
            list.Add((measured.Max(m => m[0]), measured.Average(m => m[1])));
            Console.Error.WriteLine($"round {round + 1}: {mode} {transport}: median {list[^1].Ms:0.00} ms, CPU {list[^1].CpuMs:0.00} ms per rank and exchange");
        }
Console.WriteLine($"two ranks exchanging {options.Floats:N0} floats in segments of {options.SegmentBytes / 1024} KiB, median of {options.Repeats} per round, "
    + $"{options.Rounds} rounds interleaved; the medians of the rounds:");
Console.WriteLine($"{"mode",-16} {"median ms",10} {"CPU ms per rank",16}");
foreach (var (name, list) in results)
    Console.WriteLine($"{name,-16} {Statistics.Median(list.Select(l => l.Ms)),10:0.00} {Statistics.Median(list.Select(l => l.CpuMs)),16:0.00}");
return 0;

static Process Start(string mode, string transport, int rank, string endpoint, string[] args)
{
    string self = Environment.ProcessPath!;
    var start = new ProcessStartInfo(self) { RedirectStandardOutput = true };
    if (Path.GetFileNameWithoutExtension(self) == "dotnet") start.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
    foreach (string arg in new[] { "--peer", mode, transport, $"{rank}", endpoint }.Concat(args)) start.ArgumentList.Add(arg);
    return Process.Start(start)!;
}

static int FreePort()
{
    using var listener = new TcpListener(IPAddress.Loopback, 0);
    listener.Start();
    return ((IPEndPoint)listener.LocalEndpoint).Port;
}

sealed record Options(int Floats, int SegmentBytes, int Repeats, int Rounds)
{
    public static Options Parse(IReadOnlyList<string> args)
    {
        var options = new Options(1_451_594, 256 * 1024, 40, 3);
        for (int i = 0; i + 1 < args.Count; i += 2)
        {
            int value = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
            options = args[i] switch
            {
                "--floats" => options with { Floats = value },
                "--segment-kb" => options with { SegmentBytes = value * 1024 },
                "--repeats" => options with { Repeats = value },
                "--rounds" => options with { Rounds = value },
                _ => throw new ArgumentException($"unknown option {args[i]}"),
            };
        }
        return options;
    }
}

/// <summary>One rank: rank 0 listens and rank 1 connects, then both exchange; prints "MEDIAN_MS CPU_MS_PER_EXCHANGE".</summary>
static class Peer
{
    public static int Run(string mode, string transport, int rank, string endpointText, Options options)
    {
        EndPoint endpoint = transport == "tcp" ? new IPEndPoint(IPAddress.Loopback, int.Parse(endpointText, CultureInfo.InvariantCulture))
            : new UnixDomainSocketEndPoint("\0" + endpointText);
        Socket Open() => transport == "tcp" ? new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true }
            : new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        Socket socket;
        if (rank == 0)
        {
            using var listener = Open();
            listener.Bind(endpoint);
            listener.Listen();
            socket = listener.Accept();
        }
        else
        {
            socket = Open();
            for (int attempt = 0; ; attempt++)
                try { socket.Connect(endpoint); break; }
                catch (SocketException) when (attempt < 100) { Thread.Sleep(50); socket.Dispose(); socket = Open(); }
        }
        using var _ = socket;
        socket.SendBufferSize = socket.ReceiveBufferSize = 2 * options.SegmentBytes;
        var buffer = new float[options.Floats];
        var segment = new float[options.SegmentBytes / sizeof(float)];
        var exchange = new Exchange(socket, buffer, segment, rank);
        var times = new List<double>();
        var cpu = TimeSpan.Zero;
        for (int i = 0; i < options.Repeats + 3; i++)
        {
            Array.Fill(buffer, rank + 1);
            socket.Send(new byte[1]); // a barrier: both ranks start together
            socket.Receive(new byte[1]);
            var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            var watch = Stopwatch.StartNew();
            if (mode == "blocking") exchange.Blocking();
            else exchange.Async().GetAwaiter().GetResult();
            double ms = watch.Elapsed.TotalMilliseconds;
            if (i < 3) continue;
            times.Add(ms);
            cpu += Process.GetCurrentProcess().TotalProcessorTime - cpuBefore;
            if (buffer.Any(v => v != 3)) throw new InvalidOperationException("the exchange summed wrongly");
        }
        Console.Write(FormattableString.Invariant($"{Statistics.Median(times)} {cpu.TotalMilliseconds / options.Repeats}"));
        return 0;
    }

    /// <summary>A ring of two: send chunk r, receive and add chunk 1−r, forward each summed segment, receive chunk r's sums.</summary>
    sealed class Exchange(Socket socket, float[] buffer, float[] segment, int rank)
    {
        readonly (int Start, int Length) mine = Chunk(buffer.Length, rank), theirs = Chunk(buffer.Length, 1 - rank);
        readonly int step = segment.Length;

        static (int, int) Chunk(int length, int index) => index == 0 ? (0, length / 2) : (length / 2, length - length / 2);

        // The sending half on a thread of its own that lives as long as the connection, as in the data plane.
        readonly SemaphoreSlim go = new(0), summed = new(0), sent = new(0);
        Thread? sender;

        public void Blocking()
        {
            sender ??= StartSender();
            go.Release();
            for (int at = 0; at < theirs.Length; at += step)
            {
                int n = Math.Min(step, theirs.Length - at);
                ReceiveAll(MemoryMarshal.AsBytes(segment.AsSpan(0, n)));
                var target = buffer.AsSpan(theirs.Start + at, n);
                TensorPrimitives.Add(target, segment.AsSpan(0, n), target);
                summed.Release();
            }
            for (int at = 0; at < mine.Length; at += step) ReceiveAll(MemoryMarshal.AsBytes(buffer.AsSpan(mine.Start + at, Math.Min(step, mine.Length - at))));
            sent.Wait();
        }

        Thread StartSender()
        {
            var thread = new Thread(() =>
            {
                while (true)
                {
                    go.Wait();
                    for (int at = 0; at < mine.Length; at += step) SendAll(Floats(mine, at));
                    for (int at = 0; at < theirs.Length; at += step)
                    {
                        summed.Wait();
                        SendAll(Floats(theirs, at));
                    }
                    sent.Release();
                }
            }) { IsBackground = true };
            thread.Start();
            return thread;
        }

        public async Task Async()
        {
            using var bytes = new PinnedBytes(buffer);
            using var segmentBytes = new PinnedBytes(segment);
            async Task Send()
            {
                for (int at = 0; at < mine.Length; at += step) await SendAllAsync(bytes.Memory.Slice((mine.Start + at) * 4, Math.Min(step, mine.Length - at) * 4));
                for (int at = 0; at < theirs.Length; at += step)
                {
                    await summed.WaitAsync();
                    await SendAllAsync(bytes.Memory.Slice((theirs.Start + at) * 4, Math.Min(step, theirs.Length - at) * 4));
                }
            }
            async Task Receive()
            {
                for (int at = 0; at < theirs.Length; at += step)
                {
                    int n = Math.Min(step, theirs.Length - at);
                    await ReceiveAllAsync(segmentBytes.Memory[..(n * 4)]);
                    var target = buffer.AsSpan(theirs.Start + at, n);
                    TensorPrimitives.Add(target, segment.AsSpan(0, n), target);
                    summed.Release();
                }
                for (int at = 0; at < mine.Length; at += step)
                    await ReceiveAllAsync(bytes.Memory.Slice((mine.Start + at) * 4, Math.Min(step, mine.Length - at) * 4));
            }
            await Task.WhenAll(Task.Run(Send), Task.Run(Receive));
        }

        ReadOnlySpan<byte> Floats((int Start, int Length) chunk, int at) =>
            MemoryMarshal.AsBytes(buffer.AsSpan(chunk.Start + at, Math.Min(step, chunk.Length - at)));

        void SendAll(ReadOnlySpan<byte> data)
        {
            while (!data.IsEmpty) data = data[socket.Send(data)..];
        }

        void ReceiveAll(Span<byte> into)
        {
            while (!into.IsEmpty) into = into[Received(socket.Receive(into))..];
        }

        async Task SendAllAsync(ReadOnlyMemory<byte> data)
        {
            while (!data.IsEmpty) data = data[await socket.SendAsync(data)..];
        }

        async Task ReceiveAllAsync(Memory<byte> into)
        {
            while (!into.IsEmpty) into = into[Received(await socket.ReceiveAsync(into))..];
        }

        static int Received(int n) => n > 0 ? n : throw new IOException("the peer closed the connection");
    }

    /// <summary>A float array's bytes as Memory, pinned, for the async socket calls.</summary>
    sealed unsafe class PinnedBytes(float[] array) : System.Buffers.MemoryManager<byte>
    {
        GCHandle handle = GCHandle.Alloc(array, GCHandleType.Pinned);

        public override Span<byte> GetSpan() => MemoryMarshal.AsBytes(array.AsSpan());

        public override System.Buffers.MemoryHandle Pin(int elementIndex = 0) => new((byte*)handle.AddrOfPinnedObject() + elementIndex);

        public override void Unpin() { }

        protected override void Dispose(bool disposing)
        {
            if (handle.IsAllocated) handle.Free();
        }
    }
}

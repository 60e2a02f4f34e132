using System.CommandLine;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Worker;

// Before any tensor exists: keep freed tensor memory in the heap (see NativeAllocator).
string allocator = NativeAllocator.Configure();

// The worker joins a coordinator's cluster once distributed training exists; for now it can check its machine.
var device = new Option<string>("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads (0: libtorch default)" };
var steps = new Option<int>("--steps") { Description = "training steps to run", DefaultValueFactory = _ => 5 };
var selfTest = new Command("selftest", "load TorchSharp and train a CondenseNet-86 for a few steps on the device") { device, threads, steps };
selfTest.SetAction(result =>
{
    try
    {
        TorchRuntime.SetThreads(result.GetValue(threads));
        Console.WriteLine($"allocator: {allocator}");
        return SelfTest.Run(TorchRuntime.ParseDevice(result.GetValue(device)!), Math.Max(2, result.GetValue(steps)), Console.Out);
    }
    catch (ArgumentException e)
    {
        Console.Error.WriteLine($"error: {e.Message}");
        return 1;
    }
});
var root = new RootCommand("CondenseCluster worker") { selfTest };
return root.Parse(args).Invoke();

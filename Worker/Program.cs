using System.CommandLine;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Worker;

// Before any tensor exists: keep freed tensor memory in the heap (see NativeAllocator).
string allocator = NativeAllocator.Configure();

// The worker joins a coordinator's cluster once distributed training exists; for now it can check its machine.
var device = new Option<string>("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads (0: libtorch default)" };
var steps = new Option<int>("--steps") { Description = "training steps to run", DefaultValueFactory = _ => 5 };
var batch = new Option<int>("--batch-size") { Description = "images per step", DefaultValueFactory = _ => 16 };
var dataset = new Option<string>("--dataset") { Description = "input shape of: cifar10, fashion-mnist, imagenet", DefaultValueFactory = _ => "cifar10" };
var selfTest = new Command("selftest", "load TorchSharp and train a CondenseNet-86 for a few steps on the device") { device, threads, steps, batch, dataset };
selfTest.SetAction(result =>
{
    try
    {
        TorchRuntime.SetThreads(result.GetValue(threads));
        Console.WriteLine($"allocator: {allocator}");
        return SelfTest.Run(TorchRuntime.ParseDevice(result.GetValue(device)!), result.GetValue(dataset)!, result.GetValue(batch),
            Math.Max(3, result.GetValue(steps)), Console.Out);
    }
    catch (Exception e) when (e is ArgumentException or CondenseCluster.Shared.Model.ConfigurationException)
    {
        Console.Error.WriteLine($"error: {e.Message}");
        return 1;
    }
});
var root = new RootCommand("CondenseCluster worker") { selfTest };
return root.Parse(args).Invoke();

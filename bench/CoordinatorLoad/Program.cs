using CondenseCluster.Bench.CoordinatorLoad;
using CondenseCluster.Coordinator.Control;
using CondenseCluster.Shared.Runtime;

// The real coordinator actor and job under the load of 64-1,024 simulated workers (no model, no tensors) that report
// steps at a set rate and answer importance rounds and mask broadcasts of CondenseNet-74's shapes (bench/README.md).
try
{
    if (args is [SimulatedWorkers.Role, var workers, var seed, var dashboard, .. var rest])
        return await SimulatedWorkers.RunAsync(LoadSettings.Parse(rest), int.Parse(workers), seed, dashboard);
    if (args is ["--help" or "-h"])
    {
        Console.WriteLine(LoadSettings.Usage);
        return 0;
    }
    var settings = LoadSettings.Parse(args);
    string allocator = TorchRuntime.PrepareProcess();
    // The control plane needs a token; the bench's own keeps the user's token file untouched.
    Environment.SetEnvironmentVariable(ControlToken.EnvironmentVariable, Guid.NewGuid().ToString("N"));
    var results = new List<LoadResult>();
    foreach (int n in settings.Workers) results.Add(await CoordinatorUnderLoad.RunAsync(settings, n, allocator));
    LoadReport.PrintTable(results, settings);
    return 0;
}
catch (UsageException e)
{
    Console.Error.WriteLine(e.Message);
    Console.Error.WriteLine(LoadSettings.Usage);
    return 2;
}

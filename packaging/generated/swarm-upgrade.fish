# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_swarm_upgrade_global_optspecs
    string join \n config= output= v/verbose h/help V/version
end

function __fish_swarm_upgrade_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_swarm_upgrade_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_swarm_upgrade_using_subcommand
    set -l cmd (__fish_swarm_upgrade_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -l config -d 'Configuration file; drop-ins are read from `config.d/` beside it' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -l output -d 'Output format of reports' -r -f -a "text\t'For people'
json\t'For programs'"
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -s v -l verbose -d 'More log detail (or set RUST_LOG)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -s V -l version -d 'Print version'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -f -a "plan" -d 'Dry run: preflight, node order and each node\'s actions, without changing anything'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -f -a "run" -d 'Upgrade every node now (one-off run), holding the cluster-wide lock'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -f -a "resume" -d 'Take over an interrupted run once its lock is free or expired'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -f -a "status" -d 'Show the lock and each node\'s progress'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -f -a "abort" -d 'Ask the running coordinator to stop after the current node (its batch), leaving it safe. During the hold after the canary it ends the run there'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -f -a "approve" -d 'Let the run holding after its canary (upgrade.canary) go on. With the run\'s ID (from `status`), also before its canary is done: it then goes on without holding. Exit 2 when no run holds, or the run named is not the one in progress'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -f -a "unlock" -d 'Break a stale lock, showing who held it'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -f -a "snapshot" -d 'Write the observed cluster (nodes, services, tasks, agent reports) as JSON'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -f -a "report" -d 'Show a run\'s report (every run writes one to /var/lib/swarm-upgrade/runs/), or draw it'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -f -a "agent" -d 'Run the node agent (started by swarm-upgrade-agent.service)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -f -a "archive-swarm" -d 'Archive a manager\'s swarm state for a run (the engine\'s unit runs it before the engine starts, while an upgrade with upgrade.backup_managers is under way)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand plan" -l snapshot -d 'Plan offline against a cluster saved with `swarm-upgrade snapshot`' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand plan" -l to -d 'Target: an engine version (28.5.2), resolved on each node to the package versions its own repository names for it; an exact package version as apt shows it (5:28.5.2-1~debian.13~trixie), installed exactly; or `latest` or `latest-patch`. Overrides the configured target' -r
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand plan" -l parallel -d 'Workers upgraded at once: a number (4) or a percentage of the workers (10%); overrides upgrade.parallel. Managers always go one at a time' -r
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand plan" -l accept-downtime -d 'Accept the outage of this service while the node of a task of it that cannot run elsewhere (pinned by its constraints, ports or reservations) upgrades: the drain stops the task and it comes back with the node, as the service label swarm-upgrade.downtime=accept does. Repeat for several services' -r
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand plan" -l config -d 'Configuration file; drop-ins are read from `config.d/` beside it' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand plan" -l output -d 'Output format of reports' -r -f -a "text\t'For people'
json\t'For programs'"
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand plan" -l allow-downgrade -d 'Allow a target below the installed version'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand plan" -l allow-single-manager -d 'Allow upgrading a swarm with a single manager (its control plane goes down during the restart)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand plan" -s v -l verbose -d 'More log detail (or set RUST_LOG)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand plan" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand run" -l to -d 'Target: an engine version (28.5.2), resolved on each node to the package versions its own repository names for it; an exact package version as apt shows it (5:28.5.2-1~debian.13~trixie), installed exactly; or `latest` or `latest-patch`. Overrides the configured target' -r
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand run" -l parallel -d 'Workers upgraded at once: a number (4) or a percentage of the workers (10%); overrides upgrade.parallel. Managers always go one at a time' -r
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand run" -l accept-downtime -d 'Accept the outage of this service while the node of a task of it that cannot run elsewhere (pinned by its constraints, ports or reservations) upgrades: the drain stops the task and it comes back with the node, as the service label swarm-upgrade.downtime=accept does. Repeat for several services' -r
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand run" -l config -d 'Configuration file; drop-ins are read from `config.d/` beside it' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand run" -l output -d 'Output format of reports' -r -f -a "text\t'For people'
json\t'For programs'"
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand run" -l allow-downgrade -d 'Allow a target below the installed version'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand run" -l allow-single-manager -d 'Allow upgrading a swarm with a single manager (its control plane goes down during the restart)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand run" -l ignore-window -d 'Start even outside the configured maintenance windows'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand run" -l scheduled -d 'As started by swarm-upgrade.timer: on a worker, outside every window, with every node at target, or while a node carries the label swarm-upgrade.stop, say so and exit 0; an interrupted run is resumed; another manager\'s lock exits 4 (which the unit counts as success); a target whose last run failed is refused (exit 3) until an operator retries it by hand'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand run" -s y -l yes -d 'Start without asking. On a terminal, `run` first prints the plan (order, batches, surges, accepted outages) and waits for a yes (at most 10 minutes); off a terminal, and with --scheduled, it never asks'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand run" -s v -l verbose -d 'More log detail (or set RUST_LOG)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand resume" -l config -d 'Configuration file; drop-ins are read from `config.d/` beside it' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand resume" -l output -d 'Output format of reports' -r -f -a "text\t'For people'
json\t'For programs'"
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand resume" -l wait -d 'Wait for the holder\'s lease to expire instead of failing'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand resume" -s v -l verbose -d 'More log detail (or set RUST_LOG)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand resume" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand status" -l config -d 'Configuration file; drop-ins are read from `config.d/` beside it' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand status" -l output -d 'Output format of reports' -r -f -a "text\t'For people'
json\t'For programs'"
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand status" -s v -l verbose -d 'More log detail (or set RUST_LOG)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand abort" -l config -d 'Configuration file; drop-ins are read from `config.d/` beside it' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand abort" -l output -d 'Output format of reports' -r -f -a "text\t'For people'
json\t'For programs'"
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand abort" -s v -l verbose -d 'More log detail (or set RUST_LOG)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand abort" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand approve" -l config -d 'Configuration file; drop-ins are read from `config.d/` beside it' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand approve" -l output -d 'Output format of reports' -r -f -a "text\t'For people'
json\t'For programs'"
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand approve" -s v -l verbose -d 'More log detail (or set RUST_LOG)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand approve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand unlock" -l config -d 'Configuration file; drop-ins are read from `config.d/` beside it' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand unlock" -l output -d 'Output format of reports' -r -f -a "text\t'For people'
json\t'For programs'"
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand unlock" -l force -d 'Required: breaking a live coordinator\'s lock lets two coordinators act at once'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand unlock" -s v -l verbose -d 'More log detail (or set RUST_LOG)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand unlock" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand snapshot" -l out -d 'File to write (standard output when absent)' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand snapshot" -l config -d 'Configuration file; drop-ins are read from `config.d/` beside it' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand snapshot" -l output -d 'Output format of reports' -r -f -a "text\t'For people'
json\t'For programs'"
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand snapshot" -s v -l verbose -d 'More log detail (or set RUST_LOG)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand snapshot" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand report" -l load -d 'The load generator\'s report, whose failed requests are marked on the timeline' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand report" -s o -l out -d 'Write here instead of standard output' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand report" -l config -d 'Configuration file; drop-ins are read from `config.d/` beside it' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand report" -l output -d 'Output format of reports' -r -f -a "text\t'For people'
json\t'For programs'"
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand report" -l svg -d 'Draw it as an SVG timeline: one row per node, one bar per phase, a time axis'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand report" -s v -l verbose -d 'More log detail (or set RUST_LOG)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand report" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand agent" -l config -d 'Configuration file; drop-ins are read from `config.d/` beside it' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand agent" -l output -d 'Output format of reports' -r -f -a "text\t'For people'
json\t'For programs'"
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand agent" -s v -l verbose -d 'More log detail (or set RUST_LOG)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand agent" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand archive-swarm" -l swarm -d 'The engine\'s swarm directory' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand archive-swarm" -l dir -d 'Where archives go' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand archive-swarm" -l run -d 'The run\'s ID' -r
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand archive-swarm" -l keep -d 'How many archives to keep' -r
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand archive-swarm" -l config -d 'Configuration file; drop-ins are read from `config.d/` beside it' -r -F
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand archive-swarm" -l output -d 'Output format of reports' -r -f -a "text\t'For people'
json\t'For programs'"
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand archive-swarm" -s v -l verbose -d 'More log detail (or set RUST_LOG)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand archive-swarm" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand help; and not __fish_seen_subcommand_from plan run resume status abort approve unlock snapshot report agent archive-swarm help" -f -a "plan" -d 'Dry run: preflight, node order and each node\'s actions, without changing anything'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand help; and not __fish_seen_subcommand_from plan run resume status abort approve unlock snapshot report agent archive-swarm help" -f -a "run" -d 'Upgrade every node now (one-off run), holding the cluster-wide lock'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand help; and not __fish_seen_subcommand_from plan run resume status abort approve unlock snapshot report agent archive-swarm help" -f -a "resume" -d 'Take over an interrupted run once its lock is free or expired'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand help; and not __fish_seen_subcommand_from plan run resume status abort approve unlock snapshot report agent archive-swarm help" -f -a "status" -d 'Show the lock and each node\'s progress'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand help; and not __fish_seen_subcommand_from plan run resume status abort approve unlock snapshot report agent archive-swarm help" -f -a "abort" -d 'Ask the running coordinator to stop after the current node (its batch), leaving it safe. During the hold after the canary it ends the run there'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand help; and not __fish_seen_subcommand_from plan run resume status abort approve unlock snapshot report agent archive-swarm help" -f -a "approve" -d 'Let the run holding after its canary (upgrade.canary) go on. With the run\'s ID (from `status`), also before its canary is done: it then goes on without holding. Exit 2 when no run holds, or the run named is not the one in progress'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand help; and not __fish_seen_subcommand_from plan run resume status abort approve unlock snapshot report agent archive-swarm help" -f -a "unlock" -d 'Break a stale lock, showing who held it'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand help; and not __fish_seen_subcommand_from plan run resume status abort approve unlock snapshot report agent archive-swarm help" -f -a "snapshot" -d 'Write the observed cluster (nodes, services, tasks, agent reports) as JSON'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand help; and not __fish_seen_subcommand_from plan run resume status abort approve unlock snapshot report agent archive-swarm help" -f -a "report" -d 'Show a run\'s report (every run writes one to /var/lib/swarm-upgrade/runs/), or draw it'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand help; and not __fish_seen_subcommand_from plan run resume status abort approve unlock snapshot report agent archive-swarm help" -f -a "agent" -d 'Run the node agent (started by swarm-upgrade-agent.service)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand help; and not __fish_seen_subcommand_from plan run resume status abort approve unlock snapshot report agent archive-swarm help" -f -a "archive-swarm" -d 'Archive a manager\'s swarm state for a run (the engine\'s unit runs it before the engine starts, while an upgrade with upgrade.backup_managers is under way)'
complete -c swarm-upgrade -n "__fish_swarm_upgrade_using_subcommand help; and not __fish_seen_subcommand_from plan run resume status abort approve unlock snapshot report agent archive-swarm help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'

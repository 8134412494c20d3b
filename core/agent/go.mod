module kaon/agent

go 1.19

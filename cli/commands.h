/* The numalm subcommands; each lives in cli/cmd_NAME.c. They return the
 * process exit status and print errors as "numalm NAME: message". */
#ifndef NM_COMMANDS_H
#define NM_COMMANDS_H

int cmd_info(int argc, char **argv);
int cmd_topo(int argc, char **argv);
int cmd_mkmodel(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_load(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_chat(int argc, char **argv);

int cmd_version(int argc, char **argv);

#endif

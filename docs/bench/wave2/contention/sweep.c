#include <stdlib.h>
#include <string.h>
int main(void){ size_t n=16<<20; volatile char *a=malloc(n); for(;;){ for(size_t i=0;i<n;i+=64) a[i]++; } }
